/*
 * UNIDIRECTIONAL_SEQUENCE_LSTM: TFLM's integer LSTM (lstm_eval.h), the converter's full-int8
 * LSTM: int8 input, output and hidden state, int16 cell state, int16 gates.
 *
 * Per batch row and time step, as TFLM orders it: the forget, input and cell gates
 * (act(FC(x) + FC(h)), each FC int8 -> int16 into the gates' fixed Q3.12 scale, the sum
 * saturated to int16, act the table-based int16 sigmoid, tanh for the cell gate); the cell update
 * c = f * c + i * g (int16, clipped when the layer has a cell clip); the output gate, from
 * the old hidden state; then h = tanh(c) * o into int8, which is also the step's output.
 * The hidden and cell states are the model's static state arrays (outside the arena): they
 * carry over to the next invocation as TFLM's variable tensors do.
 *
 * Lowering folds each FC's input offset into its bias (sum((x + off) w) = sum(x w) + off
 * sum(w) in wrapping int32), so the loops multiply raw int8 values.
 */
#include <string.h>

#include "fixedpoint.h"
#include "sigmoid_table.h"
#include "tinyml_kernels.h"

#define LSTM_GATE_INPUT 0
#define LSTM_GATE_FORGET 1
#define LSTM_GATE_CELL 2
#define LSTM_GATE_OUTPUT 3

static int32_t lstm_clamp16(int32_t v)
{
    return tinyml_max_i32(TINYML_INT16_MIN, tinyml_min_i32(TINYML_INT16_MAX, v));
}

/* reference_integer_ops::Logistic on int16: ``v`` is the input already rescaled
 * ((x * multiplier + round) >> shift); 9 fractional bits between table entries. */
static int16_t lstm_sigmoid(int32_t v)
{
    const uint32_t a = (uint32_t)(v < 0 ? -v : v);
    const uint32_t uh = a >> 9;
    uint32_t result;
    if (uh >= 255u) {
        result = 0x7FFFu << 10;
    } else {
        const uint32_t ua = tinyml_sigmoid_table_uint16[uh];
        const uint32_t ub = tinyml_sigmoid_table_uint16[uh + 1u];
        result = (ua << 9) + (a & 0x1FFu) * (ub - ua);
    }
    result = v >= 0 ? result + (1u << 9) : (1u << 25) - result + (1u << 9) - 1u;
    return (int16_t)(result >> 10);
}

/* reference_integer_ops::Tanh on int16 (tanh(x) = 2 sigmoid(2x) - 1 on the same table,
 * 8 fractional bits); ``v`` already rescaled. */
static int16_t lstm_tanh(int32_t v)
{
    const uint32_t a = (uint32_t)(v < 0 ? -v : v);
    const uint32_t uh = a >> 8;
    int32_t result;
    if (uh >= 255u) {
        result = 0xFFFF << 8;
    } else {
        const uint32_t ua = tinyml_sigmoid_table_uint16[uh];
        const uint32_t ub = tinyml_sigmoid_table_uint16[uh + 1u];
        result = (int32_t)((ua << 8) + (a & 0xFFu) * (ub - ua));
    }
    result = v >= 0 ? result - (1 << 23) + (1 << 7) : -result + (1 << 23) + (1 << 7) - 1;
    return (int16_t)(result >> 8);
}

/* The input rescaling of TFLM's int16 sigmoid/tanh: a zero multiplier means 3 << shift. */
static int32_t lstm_rescale(int32_t x, int32_t multiplier, int32_t shift)
{
    if (multiplier == 0) {
        return x * (3 << shift);
    }
    return (x * multiplier + (shift > 0 ? (1 << (shift - 1)) : 0)) >> shift;
}

/* act(sat16(FC(x) + FC(h))) of one gate value from its two accumulators. */
static int16_t lstm_activate(const tinyml_lstm_params *p, int32_t gate, int32_t acc_x,
                             int32_t acc_h)
{
    const int32_t sum = lstm_clamp16(
        lstm_clamp16(tinyml_mbqm(acc_x, p->input_multiplier[gate], p->input_shift[gate]))
        + lstm_clamp16(tinyml_mbqm(acc_h, p->recurrent_multiplier[gate],
                                   p->recurrent_shift[gate])));
    if (gate == LSTM_GATE_CELL) {
        return lstm_tanh(sum * 3);
    }
    return lstm_sigmoid(sum * 3);
}

/* One gate for one row of the batch: out[o] = act(sat16(FC(x) + FC(h))), four output rows
 * at a time (the DSP dot products share each input word among them). */
static void lstm_gate(const tinyml_lstm_params *p, int32_t gate, const int8_t *x,
                      const int8_t *h, int16_t *out)
{
    const int32_t n = p->units;
    const int32_t f = p->features;
    int32_t o, k;
    for (o = 0; o + 4 <= n; o += 4) {
        const int32_t row = gate * n + o;
        int32_t acc_x[4], acc_h[4];
        for (k = 0; k < 4; k++) {
            acc_x[k] = p->input_bias[row + k];
            acc_h[k] = p->recurrent_bias[row + k];
        }
        tinyml_dot4_s8(x, p->input_weights + row * f, f, acc_x);
        tinyml_dot4_s8(h, p->recurrent_weights + row * n, n, acc_h);
        for (k = 0; k < 4; k++) {
            out[o + k] = lstm_activate(p, gate, acc_x[k], acc_h[k]);
        }
    }
    for (; o < n; o++) {
        const int32_t row = gate * n + o;
        out[o] = lstm_activate(
            p, gate, tinyml_dot_s8(x, p->input_weights + row * f, f, p->input_bias[row]),
            tinyml_dot_s8(h, p->recurrent_weights + row * n, n, p->recurrent_bias[row]));
    }
}

void tinyml_lstm_s8(const tinyml_lstm_params *p, const int8_t *input, int8_t *hidden,
                    int16_t *cell, int8_t *output, void *scratch)
{
    const int32_t n = p->units;
    int16_t *gates = (int16_t *)scratch;
    int16_t *forget = gates + LSTM_GATE_FORGET * n;
    int16_t *in_gate = gates + LSTM_GATE_INPUT * n;
    int16_t *cell_gate = gates + LSTM_GATE_CELL * n;
    int16_t *out_gate = gates + LSTM_GATE_OUTPUT * n;
    int32_t b, t, i;
    for (b = 0; b < p->batch; b++) {
        int8_t *h = hidden + b * n;
        int16_t *c = cell + b * n;
        for (t = 0; t < p->time; t++) {
            const int32_t step = p->time_major ? t * p->batch + b : b * p->time + t;
            const int8_t *x = input + step * p->features;
            lstm_gate(p, LSTM_GATE_FORGET, x, h, forget);
            lstm_gate(p, LSTM_GATE_INPUT, x, h, in_gate);
            lstm_gate(p, LSTM_GATE_CELL, x, h, cell_gate);
            for (i = 0; i < n; i++) {
                const int32_t kept = lstm_clamp16(tinyml_mbqm(
                    (int32_t)forget[i] * (int32_t)c[i], p->forget_multiplier, p->forget_shift));
                const int32_t added = lstm_clamp16(tinyml_mbqm(
                    (int32_t)in_gate[i] * (int32_t)cell_gate[i], p->update_multiplier,
                    p->update_shift));
                int32_t value = lstm_clamp16(kept + added);
                if (p->cell_clip > 0) {
                    value = tinyml_max_i32(-p->cell_clip, tinyml_min_i32(p->cell_clip, value));
                }
                c[i] = (int16_t)value;
            }
            lstm_gate(p, LSTM_GATE_OUTPUT, x, h, out_gate);  /* reads the old h */
            for (i = 0; i < n; i++) {
                const int32_t th = lstm_tanh(lstm_rescale(c[i], p->cell_tanh_multiplier,
                                                          p->cell_tanh_shift));
                const int32_t v = p->hidden_zero_point
                    + tinyml_mbqm(th * (int32_t)out_gate[i], p->hidden_multiplier,
                                  p->hidden_shift);
                h[i] = (int8_t)tinyml_max_i32(-128, tinyml_min_i32(127, v));
            }
            memcpy(output + step * n, h, (size_t)n);
        }
    }
}
