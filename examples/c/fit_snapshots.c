/*
 * Train from raw snapshots through the C ABI (msde_trainer_fit: clustering,
 * minibatches of adjacent time bins, unbalanced transport with the
 * self-edge bound on tracked embryos, train steps, early stopping), then
 * sample the trained model and print a summary.
 *
 * Built-in dataset: 48 embryos following the Ornstein-Uhlenbeck process
 * dz = -z dt + 0.3 dW in 2-D from around (1.5, -1), observed at 4 times
 * 0.25 apart; the first 16 embryos carry track ids, the rest are anonymous
 * snapshots. Model and trainer live in caller memory; the workspaces, sized
 * by the queries, are malloc'ed and freed.
 *
 * Build (static): cc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude
 *   examples/c/fit_snapshots.c target/release/libmorphosde.a -lpthread -ldl -lm
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "morphosde.h"

#define D 2
#define EMBRYOS 96
#define TRACKED 32
#define BINS 4
#define N (EMBRYOS * BINS)
#define EPOCHS 8
#define TRAJ 64

static uint64_t model_mem[1024];
static uint64_t trainer_mem[16384];
static float z[N * D], t[N];
static uint32_t track[N];
static float epoch_losses[EPOCHS * MSDE_FIT_EPOCH_FLOATS];
static float samples[TRAJ * D], stop_times[TRAJ];

/* Deterministic pseudo-normal noise (sum of uniforms; no libc rand). */
static float noise(unsigned *state) {
    float s = 0.0f;
    int i;
    for (i = 0; i < 4; ++i) {
        *state = *state * 1664525u + 1013904223u;
        s += (float)(*state >> 8) / 16777216.0f - 0.5f;
    }
    return s * 1.7320508f; /* variance 1 */
}

static int check(msde_status s, const msde_error *err, const char *what) {
    if (s != MSDE_OK) {
        fprintf(stderr, "%s failed (%s): %s\n", what, msde_status_str(s), err->message);
        return 1;
    }
    return 0;
}

/* Progress callback: counts epochs; returning 0 lets training go on. */
static int32_t on_epoch(const msde_fit_epoch *epoch, void *user) {
    int *seen = (int *)user;
    *seen = (int)epoch->epoch + 1;
    return 0;
}

/* Simulates the embryos: row (b * EMBRYOS + e) is embryo e at bin b. */
static void simulate(void) {
    unsigned rng = 2024u;
    float state[EMBRYOS * D];
    int e, b, k, sub;
    for (e = 0; e < EMBRYOS; ++e) {
        state[e * D] = 1.5f + 0.3f * noise(&rng);
        state[e * D + 1] = -1.0f + 0.3f * noise(&rng);
    }
    for (b = 0; b < BINS; ++b) {
        for (e = 0; e < EMBRYOS; ++e) {
            int row = b * EMBRYOS + e;
            for (k = 0; k < D; ++k) z[row * D + k] = state[e * D + k];
            t[row] = 0.25f * (float)b;
            track[row] = e < TRACKED ? (uint32_t)e : MSDE_UNTRACKED;
        }
        /* Euler-Maruyama to the next bin in 25 substeps of 0.01. */
        for (sub = 0; sub < 25; ++sub) {
            for (e = 0; e < EMBRYOS * D; ++e) {
                state[e] += -state[e] * 0.01f + 0.3f * 0.1f * noise(&rng);
            }
        }
    }
}

int main(void) {
    msde_model_config cfg;
    msde_fit_config fcfg;
    msde_fit_report report;
    msde_sample_config scfg;
    msde_sample_report sreport;
    msde_model *model = NULL;
    msde_trainer *trainer = NULL;
    const msde_model *trained = NULL;
    msde_error err;
    size_t need = 0, float_len = 0, index_len = 0, ws_len = 0;
    float *float_ws = NULL, *sample_ws = NULL;
    uint32_t *index_ws = NULL;
    const float start[D] = {1.5f, -1.0f};
    const float end_time = 0.75f;
    float mean[D] = {0.0f, 0.0f};
    int e, k, ok = 0, epochs_seen = 0;

    simulate();
    if (check(msde_model_config_default(&cfg, &err), &err, "config")) return 1;
    cfg.d = D;
    cfg.time_features = 2;
    cfg.depth = 1;
    cfg.width = 16;
    cfg.learn_diffusion = 1;
    cfg.warmup_epochs = 2;
    cfg.learning_rate = 1e-2;
    cfg.k_neighbours = 4;
    cfg.seed = 1;
    if (check(msde_model_state_len(&cfg, &need, &err), &err, "model size")) return 1;
    if (need > sizeof model_mem) {
        fprintf(stderr, "model memory too small: need %u bytes\n", (unsigned)need);
        return 1;
    }
    if (check(msde_model_init(model_mem, sizeof model_mem, &cfg, &model, &err), &err, "model init")) return 1;
    /* n_max = 1: msde_trainer_fit brings its own workspace. */
    if (check(msde_trainer_state_len(model, 1, 0, &need, &err), &err, "trainer size")) return 1;
    if (need > sizeof trainer_mem) {
        fprintf(stderr, "trainer memory too small: need %u bytes\n", (unsigned)need);
        return 1;
    }
    if (check(msde_trainer_init(trainer_mem, sizeof trainer_mem, model, 1, 0, &trainer, &err), &err, "trainer"))
        return 1;

    if (check(msde_fit_config_default(&fcfg, &err), &err, "fit config")) return 1;
    fcfg.epochs = EPOCHS;
    fcfg.steps_per_epoch = 10;
    fcfg.batch = 32;
    fcfg.min_points = 8;
    fcfg.validation_fraction = 0.2f;
    fcfg.validation_batches = 2;
    fcfg.patience = 3;
    fcfg.cluster.k = 2;
    fcfg.seed = 3;
    if (check(msde_fit_workspace_len(model, N, &fcfg, &float_len, &index_len, &err), &err, "fit size")) return 1;
    float_ws = (float *)malloc(float_len * sizeof(float));
    index_ws = (uint32_t *)malloc(index_len * sizeof(uint32_t));
    if (float_ws == NULL || index_ws == NULL) goto done;

    /* Misuse is reported, never a crash: every observation at one time. */
    {
        static float one_bin[N];
        msde_trainer_fit(trainer, &fcfg, z, N * D, one_bin, N, track, N, float_ws, float_len, index_ws, index_len,
                         NULL, 0, NULL, NULL, NULL, &err);
        printf("one time bin: %s (%d)\n", msde_status_str(err.status), (int)err.status);
    }

    if (check(msde_trainer_fit(trainer, &fcfg, z, N * D, t, N, track, N, float_ws, float_len, index_ws, index_len,
                               epoch_losses, EPOCHS * MSDE_FIT_EPOCH_FLOATS, on_epoch, &epochs_seen, &report, &err),
              &err, "fit"))
        goto done;
    printf("fit: %u epochs (callback saw %d, best %u), %u clusters, %u train / %u held-out rows, %u steps, %u "
           "skipped\n",
           (unsigned)report.epochs, epochs_seen, (unsigned)report.best_epoch, (unsigned)report.clusters,
           (unsigned)report.train_rows, (unsigned)report.validation_rows, (unsigned)report.steps,
           (unsigned)report.skipped_steps);
    for (e = 0; e < (int)report.epochs; ++e) {
        const float *l = &epoch_losses[e * MSDE_FIT_EPOCH_FLOATS];
        printf("  epoch %d: train %.4f (drift %.4f, diffusion %.4f), validation %.4f\n", e, (double)l[0],
               (double)l[1], (double)l[2], (double)l[3]);
    }

    if (check(msde_trainer_model(trainer, &trained, &err), &err, "trained model")) goto done;
    if (check(msde_sample_config_default(MSDE_SAMPLE_EULER_MARUYAMA, &scfg, &err), &err, "sample config")) goto done;
    scfg.seed = 7;
    if (check(msde_sample_workspace_len(trained, &scfg, TRAJ, 1, 1, &ws_len, &err), &err, "sample size")) goto done;
    sample_ws = (float *)malloc(ws_len * sizeof(float));
    if (sample_ws == NULL) goto done;
    if (check(msde_sample(trained, &scfg, start, D, 0.0f, &end_time, 1, samples, TRAJ * D, stop_times, TRAJ,
                          sample_ws, ws_len, &sreport, &err),
              &err, "sample"))
        goto done;
    for (e = 0; e < TRAJ; ++e) {
        for (k = 0; k < D; ++k) mean[k] += samples[e * D + k] / (float)TRAJ;
    }
    printf("sampled %d trajectories, %u stopped; mean at t=0.75: %.3f %.3f (OU truth %.3f %.3f)\n", TRAJ,
           (unsigned)sreport.stopped, (double)mean[0], (double)mean[1], (double)(1.5f * expf(-0.75f)),
           (double)(-expf(-0.75f)));
    ok = report.epochs > 0 && epochs_seen == (int)report.epochs && sreport.stopped == 0 && isfinite(mean[0]) && isfinite(mean[1]);

done:
    free(float_ws);
    free(index_ws);
    free(sample_ws);
    return ok ? 0 : 1;
}
