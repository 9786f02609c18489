/*
 * Unbalanced optimal transport through the C ABI with caller buffers only:
 * the teacher of the drift (row masses, velocities, the plan) between two
 * snapshots, with a self-edge lower bound on known tracks.
 *
 * Built-in data: 8 sources on a line at time t; the same 8 objects moved by
 * (0.3, 0) at t + h (h = 0.5, so the true velocity is (0.6, 0)) plus 2 new
 * objects far away (growth: the unbalanced marginals let them stay
 * unmatched). Objects 0, 3 and 6 are tracked.
 *
 * Build (static): cc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude
 *   examples/c/uot_demo.c target/release/libmorphosde.a -lpthread -ldl -lm
 */
#include <math.h>
#include <stdio.h>

#include "morphosde.h"

#define D 2
#define NS 8
#define NT 10

static float workspace[4096];

int main(void) {
    float x[NS * D], y[NT * D], a[NS], b[NT];
    float median = 0.0f, rows[NS], cols[NT], velocity[NS * D], plan[NS * NT];
    const uint32_t pairs[6] = {0, 0, 3, 3, 6, 6};
    msde_uot_config cfg;
    msde_uot_summary summary;
    msde_error err;
    size_t ws_len = 0;
    float mean_v[D] = {0.0f, 0.0f}, min_bound = 1.0f;
    int i, k;

    for (i = 0; i < NS; ++i) {
        x[i * D] = 1.0f * (float)i;
        x[i * D + 1] = 0.1f * (float)(i % 3);
        y[i * D] = x[i * D] + 0.3f;
        y[i * D + 1] = x[i * D + 1];
        a[i] = 1.0f;
    }
    for (i = 0; i < NT; ++i) b[i] = 1.0f;
    y[NS * D] = 6.0f;
    y[NS * D + 1] = 4.0f;
    y[(NS + 1) * D] = -4.0f;
    y[(NS + 1) * D + 1] = 5.0f;

    /* epsilon relative to the data's squared scale. */
    if (msde_median_sq_distance_workspace_len(NS, NT, &ws_len, &err) != MSDE_OK ||
        msde_median_sq_distance(x, NS * D, y, NT * D, D, workspace, ws_len, &median, &err) != MSDE_OK) {
        fprintf(stderr, "median: %s\n", err.message);
        return 1;
    }
    if (msde_uot_config_default(0.002f * median, &cfg, &err) != MSDE_OK) return 1;
    cfg.rho_source = 0.5f * median;
    cfg.rho_target = 0.5f * median;
    cfg.h = 0.5f;
    cfg.self_edge_bound = 0.5f;
    if (msde_uot_workspace_len(NS, NT, D, &cfg, 1, &ws_len, &err) != MSDE_OK) return 1;
    if (ws_len > sizeof workspace / sizeof workspace[0]) {
        fprintf(stderr, "workspace too small: need %u floats\n", (unsigned)ws_len);
        return 1;
    }
    if (msde_uot_solve(x, NS * D, y, NT * D, a, NS, b, NT, D, pairs, 6, NULL, 0, &cfg, rows, NS, cols, NT, velocity,
                       NS * D, plan, NS * NT, workspace, ws_len, &summary, &err) != MSDE_OK) {
        fprintf(stderr, "uot: %s (%s)\n", msde_status_str(err.status), err.message);
        return 1;
    }
    for (i = 0; i < NS; ++i) {
        for (k = 0; k < D; ++k) mean_v[k] += velocity[i * D + k] / (float)NS;
    }
    for (i = 0; i < 6; i += 2) {
        float p = plan[pairs[i] * NT + pairs[i + 1]];
        if (p < min_bound) min_bound = p;
    }
    printf("median sq distance %.3f, %u iterations, marginal error %.1e\n", (double)median,
           (unsigned)summary.iterations, (double)summary.marginal_error);
    printf("total mass %.3f; mass to the 2 new objects %.4f\n", (double)summary.total_mass,
           (double)(cols[NS] + cols[NS + 1]));
    printf("mean velocity %.3f %.3f (truth 0.6 0); smallest tracked plan entry %.3f (bound 0.5)\n", (double)mean_v[0],
           (double)mean_v[1], (double)min_bound);

    /* Misuse is reported, never a crash: a NaN source. */
    x[3] = NAN;
    msde_uot_solve(x, NS * D, y, NT * D, a, NS, b, NT, D, pairs, 6, NULL, 0, &cfg, rows, NS, NULL, 0, NULL, 0, NULL, 0,
                   workspace, ws_len, NULL, &err);
    printf("NaN source: %s (%d): %s\n", msde_status_str(err.status), (int)err.status, err.message);
    return fabsf(mean_v[0] - 0.6f) < 0.1f && fabsf(mean_v[1]) < 0.1f && min_bound >= 0.5f * (1.0f - 1e-5f) ? 0 : 1;
}
