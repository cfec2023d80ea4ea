/*
 * tinyml on-device learning: float32 kernels that train a dense (fully connected) head on top
 * of a frozen int8 backbone, batch 1, in the TinyOL style (predict, then update on the label).
 *
 * The generated learn.c strings these together: forward (tinyml_dense_f32_forward, softmax),
 * backward (softmax cross-entropy gradient, tinyml_dense_f32_backward, the activation's
 * derivative), then one SGD step with gradient clipping by global L2 norm. The step is
 * transactional: tinyml_sgd_candidate_ok() evaluates the would-be parameters (and the head's
 * logits under them) without writing anything, and only a step whose every value is finite
 * is applied. A rejected step (NaN/Inf: a poisoned learning rate, an overflowing update)
 * therefore leaves the parameters bit-for-bit unchanged.
 *
 * Every loop runs in index order with float32 accumulators, so tinyml/learn/reference.py
 * can reproduce the arithmetic in numpy up to rounding-order differences.
 * C99, no allocation, no VLAs.
 */
#ifndef TINYML_TRAINING_H
#define TINYML_TRAINING_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Fused activation of a dense layer (the IR's "NONE", "RELU", "RELU6"). */
enum { TINYML_ACT_NONE = 0, TINYML_ACT_RELU = 1, TINYML_ACT_RELU6 = 2 };

/* One dense layer of the head: weights [out][in] row-major, then bias [out], both inside the
 * parameter vector at the given offsets (in floats). */
typedef struct {
    int32_t in_features;
    int32_t out_features;
    int32_t weights_offset;
    int32_t bias_offset;
    int32_t activation;
} tinyml_dense_f32_layer;

/* y[o] = act(b[o] + sum_i w[o][i] * x[i]). */
void tinyml_dense_f32_forward(const tinyml_dense_f32_layer *layer, const float *params,
                              const float *x, float *y);

/* probs = softmax(logits), numerically stable (max subtracted). */
void tinyml_softmax_f32(const float *logits, float *probs, int32_t n);

/* Gradient of -log(probs[label]) with respect to the logits: probs - onehot(label). */
void tinyml_softmax_xent_grad_f32(const float *probs, int32_t label, float *dlogits,
                                  int32_t n);

/* dy *= act'(y), where y is the layer's (activated) output. */
void tinyml_activation_grad_f32(const float *y, float *dy, int32_t n, int32_t activation);

/* Backward of a dense layer for its pre-activation gradient dz (out floats) and its input x:
 * grads[weights_offset + o*in + i] = dz[o] * x[i], grads[bias_offset + o] = dz[o], and, when
 * dx is not NULL, dx[i] = sum_o w[o][i] * dz[o] (the gradient for the previous layer). */
void tinyml_dense_f32_backward(const tinyml_dense_f32_layer *layer, const float *params,
                               const float *x, const float *dz, float *grads, float *dx);

/* sum of v[i]^2 (float32 accumulator). */
float tinyml_sum_squares_f32(const float *v, int32_t n);

/* Learning-rate times clipping factor: lr * min(1, max_norm / sqrt(norm_sq)); max_norm <= 0
 * disables clipping. */
float tinyml_clipped_step_f32(float lr, float norm_sq, float max_norm);

/* 1 when every value is finite (no NaN, no infinity). */
int tinyml_all_finite_f32(const float *v, int32_t n);

/* 1 when the candidate parameters params - step * grads are all finite and the head's
 * forward pass under them gives finite logits for the input x (scratch_a and scratch_b hold
 * max_features floats each); nothing is written outside the scratch. */
int tinyml_sgd_candidate_ok(const tinyml_dense_f32_layer *layers, int32_t num_layers,
                            const float *params, const float *grads, int32_t num_params,
                            float step, const float *x, float *scratch_a, float *scratch_b);

/* params[i] = params[i] - step * grads[i]. */
void tinyml_sgd_apply_f32(float *params, const float *grads, int32_t n, float step);

#ifdef __cplusplus
}
#endif

#endif /* TINYML_TRAINING_H */
