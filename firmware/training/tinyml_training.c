/*
 * Float32 training kernels of the on-device learning head (see tinyml_training.h).
 */
#include "tinyml_training.h"

#include <math.h>
#include <stddef.h>

static float activate(float v, int32_t activation)
{
    if (activation == TINYML_ACT_RELU) {
        return v > 0.0f ? v : 0.0f;
    }
    if (activation == TINYML_ACT_RELU6) {
        return v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f;
    }
    return v;
}

/* One output of a dense layer with parameters params - step * grads (step 0, grads NULL: the
 * parameters themselves). */
static float dense_unit(const tinyml_dense_f32_layer *layer, const float *params,
                        const float *grads, float step, const float *x, int32_t o)
{
    const int32_t in = layer->in_features;
    const float *w = params + layer->weights_offset + (size_t)o * (size_t)in;
    float acc = 0.0f;
    int32_t i;
    if (grads == NULL) {
        for (i = 0; i < in; ++i) {
            acc += w[i] * x[i];
        }
        return acc + params[layer->bias_offset + o];
    }
    {
        const float *g = grads + layer->weights_offset + (size_t)o * (size_t)in;
        for (i = 0; i < in; ++i) {
            acc += (w[i] - step * g[i]) * x[i];
        }
        return acc + (params[layer->bias_offset + o] - step * grads[layer->bias_offset + o]);
    }
}

void tinyml_dense_f32_forward(const tinyml_dense_f32_layer *layer, const float *params,
                              const float *x, float *y)
{
    int32_t o;
    for (o = 0; o < layer->out_features; ++o) {
        y[o] = activate(dense_unit(layer, params, NULL, 0.0f, x, o), layer->activation);
    }
}

void tinyml_softmax_f32(const float *logits, float *probs, int32_t n)
{
    float max = logits[0], sum = 0.0f;
    int32_t i;
    for (i = 1; i < n; ++i) {
        if (logits[i] > max) {
            max = logits[i];
        }
    }
    for (i = 0; i < n; ++i) {
        probs[i] = expf(logits[i] - max);
        sum += probs[i];
    }
    for (i = 0; i < n; ++i) {
        probs[i] = probs[i] / sum;
    }
}

void tinyml_softmax_xent_grad_f32(const float *probs, int32_t label, float *dlogits, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        dlogits[i] = probs[i] - (i == label ? 1.0f : 0.0f);
    }
}

void tinyml_activation_grad_f32(const float *y, float *dy, int32_t n, int32_t activation)
{
    int32_t i;
    if (activation == TINYML_ACT_NONE) {
        return;
    }
    for (i = 0; i < n; ++i) {
        const int active = activation == TINYML_ACT_RELU ? y[i] > 0.0f
                                                         : (y[i] > 0.0f && y[i] < 6.0f);
        if (!active) {
            dy[i] = 0.0f;
        }
    }
}

void tinyml_dense_f32_backward(const tinyml_dense_f32_layer *layer, const float *params,
                               const float *x, const float *dz, float *grads, float *dx)
{
    const int32_t in = layer->in_features, out = layer->out_features;
    int32_t o, i;
    for (o = 0; o < out; ++o) {
        float *g = grads + layer->weights_offset + (size_t)o * (size_t)in;
        for (i = 0; i < in; ++i) {
            g[i] = dz[o] * x[i];
        }
        grads[layer->bias_offset + o] = dz[o];
    }
    if (dx != NULL) {
        const float *w = params + layer->weights_offset;
        for (i = 0; i < in; ++i) {
            dx[i] = 0.0f;
        }
        for (o = 0; o < out; ++o) {
            const float *row = w + (size_t)o * (size_t)in;
            for (i = 0; i < in; ++i) {
                dx[i] += row[i] * dz[o];
            }
        }
    }
}

float tinyml_sum_squares_f32(const float *v, int32_t n)
{
    float acc = 0.0f;
    int32_t i;
    for (i = 0; i < n; ++i) {
        acc += v[i] * v[i];
    }
    return acc;
}

float tinyml_clipped_step_f32(float lr, float norm_sq, float max_norm)
{
    if (max_norm > 0.0f && norm_sq > max_norm * max_norm) {
        return lr * (max_norm / sqrtf(norm_sq));
    }
    return lr;
}

static int finite(float v)
{
    /* NaN fails both comparisons; the infinities fail one. */
    return v >= -3.40282347e38f && v <= 3.40282347e38f;
}

int tinyml_all_finite_f32(const float *v, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        if (!finite(v[i])) {
            return 0;
        }
    }
    return 1;
}

int tinyml_sgd_candidate_ok(const tinyml_dense_f32_layer *layers, int32_t num_layers,
                            const float *params, const float *grads, int32_t num_params,
                            float step, const float *x, float *scratch_a, float *scratch_b)
{
    int32_t i, l;
    const float *in = x;
    if (!finite(step)) {
        return 0;
    }
    for (i = 0; i < num_params; ++i) {
        if (!finite(params[i] - step * grads[i])) {
            return 0;
        }
    }
    for (l = 0; l < num_layers; ++l) {
        float *out = (l % 2 == 0) ? scratch_a : scratch_b;
        int32_t o;
        for (o = 0; o < layers[l].out_features; ++o) {
            out[o] = activate(dense_unit(&layers[l], params, grads, step, in, o),
                              layers[l].activation);
            if (!finite(out[o])) {
                return 0;
            }
        }
        in = out;
    }
    return 1;
}

void tinyml_sgd_apply_f32(float *params, const float *grads, int32_t n, float step)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        params[i] = params[i] - step * grads[i];
    }
}
