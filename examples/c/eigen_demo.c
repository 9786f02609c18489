/*
 * Eigen-analysis of a diffusion matrix D through the C ABI: the directions
 * along which trajectories diverge and the variance rate along each.
 * Also shows the error path (a caller buffer one element too small).
 *
 * Build (static): cc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude
 *   examples/c/eigen_demo.c target/release/libmorphosde.a -lpthread -ldl -lm
 */
#include <stdio.h>
#include <stdlib.h>

#include "morphosde.h"

int main(void) {
    /* D = L L^T for L = [[1,0,0],[0.5,0.8,0],[0.2,-0.3,0.4]]. */
    const float d_matrix[9] = {1.0f, 0.5f, 0.2f, 0.5f, 0.89f, -0.14f, 0.2f, -0.14f, 0.29f};
    const size_t d = 3;
    float w[3];
    float v[9];
    size_t ws_len = 0;
    float *ws;
    msde_error err;
    msde_status s;
    size_t k;

    if (msde_version() != ((MSDE_VERSION_MAJOR << 16) | (MSDE_VERSION_MINOR << 8) | MSDE_VERSION_PATCH)) {
        fprintf(stderr, "header and library versions differ: %s\n", msde_version_string());
        return 1;
    }
    s = msde_eigen_sym_workspace_len(d, &ws_len, &err);
    if (s != MSDE_OK) {
        fprintf(stderr, "size query failed: %s\n", err.message);
        return 1;
    }
    ws = (float *)malloc(ws_len * sizeof(float));
    if (ws == NULL) {
        return 1;
    }
    s = msde_eigen_sym(d_matrix, 9, d, w, 3, v, 9, ws, ws_len, &err);
    if (s != MSDE_OK) {
        fprintf(stderr, "eigen failed (%s): %s\n", msde_status_str(s), err.message);
        free(ws);
        return 1;
    }
    printf("trace %.6f\n", (double)(w[0] + w[1] + w[2]));
    for (k = 0; k < d; ++k) {
        printf("lambda%u %.6f dir %.6f %.6f %.6f\n", (unsigned)k, (double)w[k], (double)v[0 * 3 + k],
               (double)v[1 * 3 + k], (double)v[2 * 3 + k]);
    }
    /* The error path: a workspace one element too small. */
    s = msde_eigen_sym(d_matrix, 9, d, w, 3, v, 9, ws, ws_len - 1, &err);
    printf("short workspace: %s (%d): %s\n", msde_status_str(s), (int)err.status, err.message);
    free(ws);
    return s == MSDE_ERR_BUFFER_TOO_SMALL ? 0 : 1;
}
