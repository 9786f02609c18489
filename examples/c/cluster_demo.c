/*
 * Time-weighted spectral clustering through the C ABI with caller buffers
 * only (the embedded path: no allocation by the library): two groups of
 * points drifting apart over three time bins are split into two clusters.
 *
 * Build (static): cc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude
 *   examples/c/cluster_demo.c target/release/libmorphosde.a -lpthread -ldl -lm
 */
#include <stdio.h>

#include "morphosde.h"

#define GROUPS 2
#define PER 6
#define TIMES 3
#define N (GROUPS * PER * TIMES)
#define D 2

/* Workspace sized for this problem; the size query checks it is enough. */
static float float_ws[8192];
static uint32_t index_ws[2048];

int main(void) {
    float z[N * D];
    float t[N];
    uint32_t labels[N];
    size_t counts[2] = {0, 0};
    msde_cluster_config cfg;
    msde_cluster_summary summary;
    msde_error err;
    size_t float_len = 0, index_len = 0;
    size_t i, g, k, time, p;
    unsigned misplaced = 0;

    /* Group g sits at x = 4g (+ a small deterministic spread) and drifts
     * 0.5 per time unit in y. */
    i = 0;
    for (time = 0; time < TIMES; ++time) {
        for (g = 0; g < GROUPS; ++g) {
            for (p = 0; p < PER; ++p) {
                z[i * D] = 4.0f * (float)g + 0.1f * (float)p;
                z[i * D + 1] = 0.5f * (float)time - 0.05f * (float)p;
                t[i] = (float)time;
                ++i;
            }
        }
    }
    if (msde_cluster_config_default(2, 2.0f, &cfg, &err) != MSDE_OK) {
        fprintf(stderr, "config: %s\n", err.message);
        return 1;
    }
    cfg.seed = 7;
    if (msde_cluster_workspace_len(N, D, &cfg, &float_len, &index_len, &err) != MSDE_OK) {
        fprintf(stderr, "workspace query: %s\n", err.message);
        return 1;
    }
    if (float_len > sizeof float_ws / sizeof float_ws[0] || index_len > sizeof index_ws / sizeof index_ws[0]) {
        fprintf(stderr, "static workspace too small: need %u floats, %u indices\n", (unsigned)float_len,
                (unsigned)index_len);
        return 1;
    }
    if (msde_cluster(z, N * D, t, N, N, D, &cfg, labels, N, float_ws, float_len, index_ws, index_len, &summary,
                     &err) != MSDE_OK) {
        fprintf(stderr, "cluster (%s): %s\n", msde_status_str(err.status), err.message);
        return 1;
    }
    for (i = 0; i < N; ++i) {
        g = (i / PER) % GROUPS;
        counts[labels[i] < 2 ? labels[i] : 0] += 1;
        misplaced += labels[i] != (uint32_t)g;
    }
    printf("clusters %u sizes %u %u misplaced %u sigma_z %.3f\n", (unsigned)summary.k, (unsigned)counts[0],
           (unsigned)counts[1], misplaced, (double)summary.sigma_z);
    for (k = 0; k < summary.eigen_count; ++k) {
        printf("eigenvalue%u %.4f\n", (unsigned)k, (double)summary.eigenvalues[k]);
    }
    /* The error path: k larger than the number of points. */
    cfg.k = N + 1;
    msde_cluster(z, N * D, t, N, N, D, &cfg, labels, N, float_ws, float_len, index_ws, index_len, NULL, &err);
    printf("k too large: %s (%d): %s\n", msde_status_str(err.status), (int)err.status, err.message);
    return err.status == MSDE_ERR_BAD_CONFIG && misplaced == 0 ? 0 : 1;
}
