/*
 * Train and sample through the C ABI with caller buffers only (the path
 * firmware takes: the library allocates nothing in these calls).
 *
 * Built-in dataset: an Ornstein-Uhlenbeck process dz = -z dt + 0.3 dW in 2-D.
 * Each minibatch pairs 16 sources on a ring with their end points one frame
 * (h = 0.1) later; the teacher velocity is the displacement over h.
 * The model (one hidden layer of 16, full diffusion head) is trained for
 * 150 steps, then 64 Euler-Maruyama trajectories start at (1, 1).
 *
 * Build (static): cc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude
 *   examples/c/train_and_sample.c target/release/libmorphosde.a -lpthread -ldl -lm
 */
#include <math.h>
#include <stdio.h>

#include "morphosde.h"

#define D 2
#define N 16
#define STEPS 150
#define TRAJ 64
#define TIMES 2

/* Object memory: uint64_t arrays are aligned to MSDE_STATE_ALIGN (8). */
static uint64_t model_mem[1024];
static uint64_t trainer_mem[8192];
static float sample_ws[8192];
static float samples[TRAJ * TIMES * D];
static float stop_times[TRAJ];

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

int main(void) {
    msde_model_config cfg;
    msde_model *model = NULL;
    msde_trainer *trainer = NULL;
    const msde_model *trained = NULL;
    msde_sample_config scfg;
    msde_sample_report report;
    msde_step_loss loss;
    msde_batch batch;
    msde_error err;
    size_t need = 0, ws_len = 0;
    float x[N * D], t[N], h[N], v_hat[N * D], mass[N], y[N * D];
    float first_loss = 0.0f, last_loss = 0.0f;
    const float start[D] = {1.0f, 1.0f};
    const float times[TIMES] = {0.5f, 1.0f};
    float mean[D] = {0.0f, 0.0f};
    float f_at[D], probe[D] = {1.0f, 0.0f}, probe_t = 0.0f;
    unsigned rng = 12345u;
    int i, k, step;

    if (check(msde_model_config_default(&cfg, &err), &err, "config")) return 1;
    cfg.d = D;
    cfg.time_features = 2;
    cfg.depth = 1;
    cfg.width = 16;
    cfg.learn_diffusion = 1;
    cfg.warmup_epochs = 0;
    cfg.learning_rate = 1e-2;
    cfg.k_neighbours = 4;
    cfg.residual = MSDE_RESIDUAL_ONE_STEP;
    cfg.seed = 1;
    if (check(msde_model_state_len(&cfg, &need, &err), &err, "model size")) return 1;
    if (need > sizeof model_mem) {
        fprintf(stderr, "model memory too small: need %u bytes\n", (unsigned)need);
        return 1;
    }
    if (check(msde_model_init(model_mem, sizeof model_mem, &cfg, &model, &err), &err, "model init")) return 1;
    if (check(msde_trainer_state_len(model, N, 0, &need, &err), &err, "trainer size")) return 1;
    if (need > sizeof trainer_mem) {
        fprintf(stderr, "trainer memory too small: need %u bytes\n", (unsigned)need);
        return 1;
    }
    if (check(msde_trainer_init(trainer_mem, sizeof trainer_mem, model, N, 0, &trainer, &err), &err, "trainer"))
        return 1;

    batch.x = x;
    batch.x_len = N * D;
    batch.t = t;
    batch.t_len = N;
    batch.h = h;
    batch.h_len = N;
    batch.v_hat = v_hat;
    batch.v_hat_len = N * D;
    batch.mass = mass;
    batch.mass_len = N;
    batch.y = y;
    batch.y_len = N * D;
    batch.plan = NULL;
    batch.plan_len = 0;
    for (step = 0; step < STEPS; ++step) {
        for (i = 0; i < N; ++i) {
            float angle = 6.2831853f * ((float)i + 0.37f * (float)step) / (float)N;
            float radius = 0.5f + 1.5f * (float)(i % 4) / 3.0f;
            t[i] = 0.0f;
            h[i] = 0.1f;
            mass[i] = 1.0f;
            x[i * D] = radius * cosf(angle);
            x[i * D + 1] = radius * sinf(angle);
            for (k = 0; k < D; ++k) {
                /* Exact OU transition over h: mean x e^{-h}, sd 0.3 sqrt((1 - e^{-2h}) / 2). */
                y[i * D + k] = x[i * D + k] * expf(-0.1f) + 0.3f * sqrtf((1.0f - expf(-0.2f)) / 2.0f) * noise(&rng);
                v_hat[i * D + k] = (y[i * D + k] - x[i * D + k]) / 0.1f;
            }
        }
        if (check(msde_trainer_step(trainer, (uint32_t)step, &batch, &loss, &err), &err, "train step")) return 1;
        if (step == 0) first_loss = loss.drift;
        last_loss = loss.drift;
    }
    printf("trained %u steps: drift loss %.4f -> %.4f\n", (unsigned)loss.steps, (double)first_loss,
           (double)last_loss);

    if (check(msde_trainer_model(trainer, &trained, &err), &err, "trained model")) return 1;
    if (check(msde_model_eval_workspace_len(trained, 1, &ws_len, &err), &err, "eval size")) return 1;
    if (check(msde_model_drift(trained, probe, D, &probe_t, 1, 1, f_at, D, sample_ws, ws_len, &err), &err, "drift"))
        return 1;
    printf("drift at (1, 0): %.3f %.3f\n", (double)f_at[0], (double)f_at[1]);

    if (check(msde_sample_config_default(MSDE_SAMPLE_EULER_MARUYAMA, &scfg, &err), &err, "sample config")) return 1;
    scfg.seed = 7;
    /* One worker: the smallest workspace (identical numbers to any other). */
    if (check(msde_sample_workspace_len(trained, &scfg, TRAJ, TIMES, 1, &ws_len, &err), &err, "sample size"))
        return 1;
    if (ws_len > sizeof sample_ws / sizeof sample_ws[0]) {
        fprintf(stderr, "sample workspace too small: need %u floats\n", (unsigned)ws_len);
        return 1;
    }
    if (check(msde_sample(trained, &scfg, start, D, 0.0f, times, TIMES, samples, TRAJ * TIMES * D, stop_times, TRAJ,
                          sample_ws, ws_len, &report, &err),
              &err, "sample"))
        return 1;
    for (i = 0; i < TRAJ; ++i) {
        for (k = 0; k < D; ++k) {
            mean[k] += samples[(i * TIMES + TIMES - 1) * D + k] / (float)TRAJ;
        }
    }
    printf("sampled %d trajectories, %u stopped; mean at t=1: %.3f %.3f (OU truth %.3f)\n", TRAJ,
           (unsigned)report.stopped, (double)mean[0], (double)mean[1], (double)expf(-1.0f));

#if defined(MSDE_STD)
    /* std build: the same model as a heap handle (msde_model_new / _free). */
    {
        msde_model *heap = NULL;
        float f_heap[D];
        if (check(msde_model_new(&cfg, &heap, &err), &err, "heap model")) return 1;
        if (check(msde_model_drift(heap, probe, D, &probe_t, 1, 1, f_heap, D, sample_ws, ws_len, &err), &err,
                  "heap drift"))
            return 1;
        msde_model_free(heap);
        msde_model_free(NULL);
        printf("heap model (MSDE_STD): untrained drift at (1, 0): %.3f %.3f\n", (double)f_heap[0],
               (double)f_heap[1]);
    }
#endif

    /* Misuse is reported, never a crash: gaps h one entry short. */
    batch.h_len = N - 1;
    msde_trainer_step(trainer, 0, &batch, &loss, &err);
    printf("short h: %s (%d): %s\n", msde_status_str(err.status), (int)err.status, err.message);
    return last_loss < first_loss && report.stopped == 0 ? 0 : 1;
}
