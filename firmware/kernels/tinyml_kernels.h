/*
 * tinyml portable int8 kernels: parameter structs and entry points.
 *
 * Every kernel reproduces the numpy reference interpreter (tinyml/reference), and through it
 * TFLite Micro's reference kernels, bit for bit: int32 accumulators, double-rounding
 * requantization (SaturatingRoundingDoublingHighMul + RoundingDivideByPOT) and the same
 * clamp order.
 *
 * Kernels never derive constants: the code generator's lowering step
 * (tinyml/codegen/lowering.py) computes every multiplier, shift, activation range and
 * fixed-point parameter in Python with the reference's own functions and writes them into
 * these structs, so the C code and the reference cannot drift apart. Layouts are NHWC.
 *
 * Calling convention: kernel(&params, inputs..., outputs..., scratch). Tensor arguments are
 * typed by what they hold (int8_t or float); data-movement kernels work on any element type
 * and take void pointers. A kernel documented as "in place" accepts an output pointer equal
 * to the named input pointer. Scratch buffers have the size lowering declares
 * (KernelCall.scratch_bytes) and hold nothing between calls.
 *
 * Array fields point to constants (flash); one field per line so tools can read the structs.
 * C99, no allocation, no VLAs, no floating point outside QUANTIZE and DEQUANTIZE.
 */
#ifndef TINYML_KERNELS_H
#define TINYML_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CONV_2D ------------------------------------------------------------------------------
 * Filter OHWI ([output_c][filter_h][filter_w][filter_c]); grouped when filter_c < input_c
 * (groups = input_c / filter_c). Requantization per output channel.
 *
 * tinyml_conv2d_s8:     any filter, stride, dilation, padding, groups.
 *                       acc = bias[oc] + sum over taps inside the image of
 *                       (input + input_offset) * filter.
 * tinyml_conv2d_1x1_s8: filter 1x1, no padding, one group, any stride. Lowering folds the
 *                       input offset into the bias (bias[oc] + input_offset * sum of the
 *                       filter row), so the kernel computes acc = bias[oc] + input . filter.
 *
 * scratch (these and tinyml_conv2d_add_s8): the portable kernels use none (lowering declares
 * 0 bytes and the generated code passes NULL); the Cortex-M DSP kernels copy input windows
 * there as int16 (lowering declares their size for targets with those kernels).
 */
typedef struct {
    int32_t batches;
    int32_t input_h;
    int32_t input_w;
    int32_t input_c;
    int32_t output_h;
    int32_t output_w;
    int32_t output_c;
    int32_t filter_h;
    int32_t filter_w;
    int32_t filter_c;
    int32_t stride_h;
    int32_t stride_w;
    int32_t dilation_h;
    int32_t dilation_w;
    int32_t pad_top;
    int32_t pad_left;
    int32_t input_offset;        /* -input zero point */
    int32_t output_offset;       /* output zero point */
    int32_t act_min;
    int32_t act_max;
    const int8_t *filter;
    const int32_t *bias;         /* output_c entries (see the kernels above) */
    const int32_t *multiplier;   /* output_c entries */
    const int32_t *shift;        /* output_c entries; > 0 shifts left */
    int32_t block;               /* Cortex-M DSP kernels: 7 (or 4) takes output pixels 7 (or
                                  * 4) at a time where they would take 8 (lowering sizes the
                                  * scratch for it); 0: their own rule. The portable kernels
                                  * ignore it. */
} tinyml_conv2d_params;

void tinyml_conv2d_s8(const tinyml_conv2d_params *p, const int8_t *input, int8_t *output,
                      int8_t *scratch);
void tinyml_conv2d_1x1_s8(const tinyml_conv2d_params *p, const int8_t *input, int8_t *output,
                          int8_t *scratch);

/* ---- packed int4 filters (CONV_2D, CONV_2D_ADD, DEPTHWISE_CONV_2D, FULLY_CONNECTED) -------
 * The *_s4 kernels take the same params and compute exactly what their *_s8 twins compute on
 * the unpacked filter values (int4: [-8, 7], per-channel symmetric), as TFLM does. `filter`
 * then points to packed rows (tinyml/codegen/int4_layout.py): each output channel's K values
 * (CONV_2D: filter_h * filter_w * filter_c, DEPTHWISE_CONV_2D: filter_h * filter_w,
 * FULLY_CONNECTED: input_depth) in (K + 1) / 2 bytes, rows back to back; per full group of 8
 * values, byte j holds value j in its low nibble and value 4 + j in its high nibble; the last
 * K mod 8 values follow two to a byte, low nibble first. Scratch: as the *_s8 kernel, except
 * the Cortex-M DSP depthwise kernels, which take 4 * filter_h * filter_w bytes more (lowering
 * declares it). */
void tinyml_conv2d_s4(const tinyml_conv2d_params *p, const int8_t *input, int8_t *output,
                      int8_t *scratch);
void tinyml_conv2d_1x1_s4(const tinyml_conv2d_params *p, const int8_t *input, int8_t *output,
                          int8_t *scratch);

/* ---- CONV_2D_ADD (CONV_2D fused with a residual ADD by tinyml.passes) ---------------------
 * Each convolution output element is computed exactly as tinyml_conv2d_s8 does with `conv`
 * (requantized to the convolution's own quantization and clamped to [conv.act_min,
 * conv.act_max]). It is then added to the skip element at the same position as tinyml_add_s8
 * does, with the add_* fields (the convolution result is ADD's first operand unless
 * add_skip_first). In place: output == skip. */
typedef struct {
    tinyml_conv2d_params conv;   /* conv.output_offset: zero point of the convolution result */
    int32_t add_skip_first;      /* 1: skip is ADD's first operand */
    int32_t add_conv_offset;     /* -zero point of the convolution result */
    int32_t add_skip_offset;     /* -skip zero point */
    int32_t add_left_shift;
    int32_t add_conv_multiplier;
    int32_t add_conv_shift;
    int32_t add_skip_multiplier;
    int32_t add_skip_shift;
    int32_t add_output_multiplier;
    int32_t add_output_shift;
    int32_t add_output_offset;
    int32_t add_act_min;
    int32_t add_act_max;
} tinyml_conv2d_add_params;

void tinyml_conv2d_add_s8(const tinyml_conv2d_add_params *p, const int8_t *input,
                          const int8_t *skip, int8_t *output, int8_t *scratch);
void tinyml_conv2d_add_s4(const tinyml_conv2d_add_params *p, const int8_t *input,
                          const int8_t *skip, int8_t *output, int8_t *scratch); /* packed int4 */

/* ---- DEPTHWISE_CONV_2D -------------------------------------------------------------------
 * Output channel c * depth_multiplier + m reads input channel c. Filter channel-major:
 * [output_c][filter_h][filter_w]. Per input channel the kernel copies the channel's plane,
 * padded with the input zero point, into scratch (plane_h * plane_w bytes), then writes that
 * channel's outputs: with depth_multiplier == 1 and output_h * output_w <= input_h * input_w
 * it runs in place (output == input). The zero-point padding contributes nothing, so lowering
 * folds the input offset into the bias (bias[oc] + input_offset * sum of the channel's taps)
 * and the kernel accumulates plain int8 products.
 *
 * tinyml_depthwise_conv2d_s8:     any filter, stride, dilation, padding, depth multiplier.
 * tinyml_depthwise_conv2d_3x3_s8: 3x3 filter, dilation 1 (any stride, padding, multiplier).
 */
typedef struct {
    int32_t batches;
    int32_t input_h;
    int32_t input_w;
    int32_t input_c;
    int32_t output_h;
    int32_t output_w;
    int32_t depth_multiplier;
    int32_t filter_h;
    int32_t filter_w;
    int32_t stride_h;
    int32_t stride_w;
    int32_t dilation_h;
    int32_t dilation_w;
    int32_t pad_top;
    int32_t pad_left;
    int32_t plane_h;             /* (output_h - 1) * stride_h + (filter_h - 1) * dilation_h + 1 */
    int32_t plane_w;             /* likewise; scratch holds plane_h * plane_w bytes */
    int32_t input_zero_point;    /* fills the padding of the plane */
    int32_t output_offset;
    int32_t act_min;
    int32_t act_max;
    int32_t pixel_channels;      /* DSP kernels: channels per pass of the pixel-by-pixel path
                                    the scratch holds (0: that path is off) */
    const int8_t *filter;
    const int32_t *bias;         /* input offset folded in */
    const int32_t *multiplier;
    const int32_t *shift;
} tinyml_depthwise_conv2d_params;

void tinyml_depthwise_conv2d_s8(const tinyml_depthwise_conv2d_params *p, const int8_t *input,
                                int8_t *output, int8_t *scratch);
void tinyml_depthwise_conv2d_3x3_s8(const tinyml_depthwise_conv2d_params *p,
                                    const int8_t *input, int8_t *output, int8_t *scratch);
/* Packed int4 filters (see CONV_2D above); in place under the same condition. */
void tinyml_depthwise_conv2d_s4(const tinyml_depthwise_conv2d_params *p, const int8_t *input,
                                int8_t *output, int8_t *scratch);
void tinyml_depthwise_conv2d_3x3_s4(const tinyml_depthwise_conv2d_params *p,
                                    const int8_t *input, int8_t *output, int8_t *scratch);

/* ---- FULLY_CONNECTED ---------------------------------------------------------------------
 * Filter [output_depth][input_depth]; every leading input dimension is a batch row.
 * acc = bias[o] + sum_i input[i] * (filter[o][i] + filter_offset): lowering folds the input
 * offset into the bias. filter_offset is -filter zero point for per-tensor weights and 0 for
 * per-channel ones; per-tensor layers repeat their multiplier in every entry. */
typedef struct {
    int32_t batches;
    int32_t input_depth;
    int32_t output_depth;
    int32_t filter_offset;
    int32_t output_offset;
    int32_t act_min;
    int32_t act_max;
    const int8_t *filter;
    const int32_t *bias;         /* input offset folded in */
    const int32_t *multiplier;   /* output_depth entries */
    const int32_t *shift;        /* output_depth entries */
} tinyml_fully_connected_params;

/* scratch: none (lowering declares 0 bytes, the call passes NULL); the Cortex-M DSP kernel
 * reads the int8 input row directly. */
void tinyml_fully_connected_s8(const tinyml_fully_connected_params *p, const int8_t *input,
                               int8_t *output, int8_t *scratch);
/* Packed int4 filter (see CONV_2D above; filter_offset is 0). */
void tinyml_fully_connected_s4(const tinyml_fully_connected_params *p, const int8_t *input,
                               int8_t *output, int8_t *scratch);

/* ---- Sparse weights: FULLY_CONNECTED and CONV_2D read run-length rows -------------------
 * Lowering (tinyml/codegen/sparse.py) stores a filter whose rows are mostly zero as a stream
 * of entries read directly by these kernels; the input offset is folded into the bias as for
 * the dense 1x1 kernels, so a skipped weight (an exact 0) adds exactly what TFLM's dense loop
 * adds for it: nothing. One entry (skip s in 0..15, value v): the row position advances by s,
 * acc += x[position] * v, the position advances by 1. A gap of 16 or more zeros takes
 * filler entries (15, 0): a multiply by 0 rather than a branch in the loop. row_entries[r]
 * counts the entries of row r (fillers included); trailing zeros of a row take none.
 *
 *   value_bits 4 (int4 weights): one byte per entry, value in the high nibble (two's
 *                complement), skip in the low one: code = v * 16 + s, read as int8.
 *   value_bits 8 (int8 weights): pairs of entries as three bytes [s0 | s1 << 4][v0][v1]; a
 *                row with an odd count ends with the two bytes [s0][v0].
 *
 * Rows follow one another in `stream`; output channel o is row o (an FC filter row, or the
 * OHWI filter of output channel o flattened in H, W, I order). */
typedef struct {
    int32_t batches;
    int32_t input_depth;
    int32_t output_depth;
    int32_t value_bits;          /* 4 or 8 */
    int32_t output_offset;
    int32_t act_min;
    int32_t act_max;
    const uint16_t *row_entries; /* output_depth entries */
    const int8_t *stream;
    const int32_t *bias;         /* input offset folded in */
    const int32_t *multiplier;   /* output_depth entries */
    const int32_t *shift;        /* output_depth entries */
} tinyml_fully_connected_sparse_params;

/* scratch: none. Per-channel (or per-tensor with filter zero point 0) weights only. */
void tinyml_fully_connected_sparse_s8(const tinyml_fully_connected_sparse_params *p,
                                      const int8_t *input, int8_t *output, int8_t *scratch);

/* CONV_2D with one group. tinyml_conv2d_1x1_sparse_s8: filter 1x1, no padding, any stride;
 * no scratch. tinyml_conv2d_sparse_s8: any filter, stride, dilation and padding; per output
 * pixel it copies the window (filter_h * filter_w * input_c bytes of scratch) with the taps
 * outside the image set to the input zero point, whose products the folded bias cancels
 * exactly (zp * w + input_offset * w = 0), then runs the rows on it. */
typedef struct {
    int32_t batches;
    int32_t input_h;
    int32_t input_w;
    int32_t input_c;
    int32_t output_h;
    int32_t output_w;
    int32_t output_c;
    int32_t filter_h;
    int32_t filter_w;
    int32_t stride_h;
    int32_t stride_w;
    int32_t dilation_h;
    int32_t dilation_w;
    int32_t pad_top;
    int32_t pad_left;
    int32_t input_zero_point;    /* fills the taps outside the image */
    int32_t output_offset;
    int32_t act_min;
    int32_t act_max;
    int32_t value_bits;          /* 4 or 8 */
    const uint16_t *row_entries; /* output_c entries */
    const int8_t *stream;
    const int32_t *bias;         /* bias + input_offset * sum of the channel's weights */
    const int32_t *multiplier;
    const int32_t *shift;
} tinyml_conv2d_sparse_params;

void tinyml_conv2d_1x1_sparse_s8(const tinyml_conv2d_sparse_params *p, const int8_t *input,
                                 int8_t *output, int8_t *scratch);
void tinyml_conv2d_sparse_s8(const tinyml_conv2d_sparse_params *p, const int8_t *input,
                             int8_t *output, int8_t *scratch);

/* ---- ADD and MUL -------------------------------------------------------------------------
 * numpy broadcasting over 4 dimensions: shape holds the output dimensions (leading 1s for
 * lower ranks), strides1/strides2 each input's element strides (0 where it broadcasts).
 * tinyml_add_s8 / tinyml_mul_s8: both inputs have the output's shape (shape/strides unused).
 * *_broadcast_s8: the general case. In place on an input whose shape equals the output's. */
typedef struct {
    int32_t size;                /* output elements */
    const int32_t *shape;        /* 4 entries */
    const int32_t *strides1;     /* 4 entries */
    const int32_t *strides2;     /* 4 entries */
    int32_t input1_offset;
    int32_t input2_offset;
    int32_t left_shift;          /* 20 */
    int32_t input1_multiplier;
    int32_t input1_shift;
    int32_t input2_multiplier;
    int32_t input2_shift;
    int32_t output_multiplier;
    int32_t output_shift;
    int32_t output_offset;
    int32_t act_min;
    int32_t act_max;
} tinyml_add_params;

void tinyml_add_s8(const tinyml_add_params *p, const int8_t *input1, const int8_t *input2,
                   int8_t *output);
void tinyml_add_broadcast_s8(const tinyml_add_params *p, const int8_t *input1,
                             const int8_t *input2, int8_t *output);

typedef struct {
    int32_t size;
    const int32_t *shape;
    const int32_t *strides1;
    const int32_t *strides2;
    int32_t input1_offset;
    int32_t input2_offset;
    int32_t output_multiplier;
    int32_t output_shift;
    int32_t output_offset;
    int32_t act_min;
    int32_t act_max;
} tinyml_mul_params;

void tinyml_mul_s8(const tinyml_mul_params *p, const int8_t *input1, const int8_t *input2,
                   int8_t *output);
void tinyml_mul_broadcast_s8(const tinyml_mul_params *p, const int8_t *input1,
                             const int8_t *input2, int8_t *output);

/* ---- AVERAGE_POOL_2D, MAX_POOL_2D ----------------------------------------------------------
 * Windows clipped to the image: the average divides by the number of valid cells (rounding
 * half away from zero), the maximum starts at -128. Then the activation clamp. */
typedef struct {
    int32_t batches;
    int32_t input_h;
    int32_t input_w;
    int32_t channels;
    int32_t output_h;
    int32_t output_w;
    int32_t filter_h;
    int32_t filter_w;
    int32_t stride_h;
    int32_t stride_w;
    int32_t pad_top;
    int32_t pad_left;
    int32_t act_min;
    int32_t act_max;
} tinyml_pool2d_params;

void tinyml_avg_pool2d_s8(const tinyml_pool2d_params *p, const int8_t *input, int8_t *output);
void tinyml_max_pool2d_s8(const tinyml_pool2d_params *p, const int8_t *input, int8_t *output);

/* ---- MEAN ---------------------------------------------------------------------------------
 * Over any set of axes of an up-to-4-D input (lowering merges adjacent dimensions). The sum,
 * minus count * input zero point, is rescaled by one multiplier with 1/count folded in. */
typedef struct {
    const int32_t *shape;        /* 4 input dimensions */
    const int32_t *reduced;      /* 4 flags: 1 if the dimension is averaged */
    int32_t input_offset_sum;    /* -input zero point * count, wrapped to int32 */
    int32_t multiplier;
    int32_t shift;
    int32_t output_offset;
} tinyml_mean_params;

void tinyml_mean_s8(const tinyml_mean_params *p, const int8_t *input, int8_t *output);

/* ---- SOFTMAX (last axis; output scale 1/256, zero point -128). In place. ------------------ */
typedef struct {
    int32_t rows;
    int32_t depth;
    int32_t input_multiplier;
    int32_t input_left_shift;
    int32_t diff_min;
} tinyml_softmax_params;

void tinyml_softmax_s8(const tinyml_softmax_params *p, const int8_t *input, int8_t *output);

/* ---- LOGISTIC (output scale 1/256, zero point -128). In place. ---------------------------- */
typedef struct {
    int32_t size;
    int32_t input_zero_point;
    int32_t input_multiplier;
    int32_t input_left_shift;
    int32_t input_range_radius;
} tinyml_logistic_params;

void tinyml_logistic_s8(const tinyml_logistic_params *p, const int8_t *input, int8_t *output);

/* ---- HARD_SWISH (int16 fixed point, 16-bit multipliers). In place. ------------------------ */
typedef struct {
    int32_t size;
    int32_t input_zero_point;
    int32_t output_zero_point;
    int32_t output_multiplier;   /* int16 range */
    int32_t output_exponent;     /* <= 0 */
    int32_t reluish_multiplier;  /* int16 range */
    int32_t reluish_exponent;
} tinyml_hard_swish_params;

void tinyml_hard_swish_s8(const tinyml_hard_swish_params *p, const int8_t *input,
                          int8_t *output);

/* ---- RELU and CLIP: requantize to the output scale, then clamp. In place. ----------------- */
typedef struct {
    int32_t size;
    int32_t input_zero_point;
    int32_t output_zero_point;
    int32_t multiplier;
    int32_t shift;
    int32_t act_min;
    int32_t act_max;
} tinyml_relu_params;

void tinyml_relu_s8(const tinyml_relu_params *p, const int8_t *input, int8_t *output);

/* ---- RELU6: clamps the input codes to [lower, upper], no rescaling (as TFLM). In place. --- */
typedef struct {
    int32_t size;
    int32_t lower;
    int32_t upper;
} tinyml_relu6_params;

void tinyml_relu6_s8(const tinyml_relu6_params *p, const int8_t *input, int8_t *output);

/* ---- QUANTIZE float32 -> int8: round(x / scale) (float32, half away from zero) + zp. ------ */
typedef struct {
    int32_t size;
    float scale;
    int32_t zero_point;
} tinyml_quantize_params;

void tinyml_quantize_f32_s8(const tinyml_quantize_params *p, const float *input,
                            int8_t *output);

/* ---- QUANTIZE int8 -> int8 (requantization). In place. ----------------------------------- */
typedef struct {
    int32_t size;
    int32_t input_zero_point;
    int32_t multiplier;
    int32_t shift;
    int32_t output_zero_point;
} tinyml_requantize_params;

void tinyml_requantize_s8(const tinyml_requantize_params *p, const int8_t *input,
                          int8_t *output);

/* ---- DEQUANTIZE int8 -> float32: scale * (x - zero_point), correctly rounded. ------------- */
typedef struct {
    int32_t size;
    float scale;
    int32_t zero_point;
} tinyml_dequantize_params;

void tinyml_dequantize_s8_f32(const tinyml_dequantize_params *p, const int8_t *input,
                              float *output);

/* ---- Data movement (any element type) ----------------------------------------------------- */

/* PAD: up to 4-D; pad_value holds the padding element's bits (the int8 code, or a float32's
 * bit pattern for element_size 4). */
typedef struct {
    int32_t element_size;        /* 1, 2 or 4 bytes */
    const int32_t *input_shape;  /* 4 entries */
    const int32_t *output_shape; /* 4 entries */
    const int32_t *pad_before;   /* 4 entries */
    int32_t pad_value;
} tinyml_pad_params;

void tinyml_pad(const tinyml_pad_params *p, const void *input, void *output);

/* TRANSPOSE: output element (i0, i1, i2, i3) is input element sum(i_k * input_strides[k]). */
typedef struct {
    int32_t element_size;
    const int32_t *output_shape;  /* 4 entries */
    const int32_t *input_strides; /* 4 entries, in elements, per output dimension */
} tinyml_transpose_params;

void tinyml_transpose(const tinyml_transpose_params *p, const void *input, void *output);

/* CONCATENATION: variadic. Call as tinyml_concatenation(&p, in_0, ..., in_{n-1}, out) with
 * num_inputs input pointers and one output pointer (read back as const void * / void *).
 * For each of outer_size slices the inputs' slice bytes are copied one after the other. */
typedef struct {
    int32_t num_inputs;
    int32_t outer_size;
    const int32_t *slice_bytes;   /* num_inputs entries */
} tinyml_concatenation_params;

void tinyml_concatenation(const tinyml_concatenation_params *p, ...);

/* RESHAPE: a copy (usually an alias and never called). In place. */
typedef struct {
    int32_t bytes;
} tinyml_reshape_params;

void tinyml_reshape(const tinyml_reshape_params *p, const void *input, void *output);

/* ---- data_movement ops ---------------------------------------------------------------- */

/* SLICE, STRIDED_SLICE, REVERSE_V2, BROADCAST_TO, MIRROR_PAD, RESIZE_NEAREST_NEIGHBOR,
 * DEPTH_TO_SPACE, SPACE_TO_DEPTH, GATHER and GATHER_ND: every output element, in row-major
 * order over shape, is the input element at byte offset
 * offsets[i0] + offsets[shape[0] + i1] + offsets[shape[0] + shape[1] + i2] + ... (one table
 * per axis, concatenated). inner_contiguous: the last axis's table steps by element_size, so
 * rows are copied whole. */
typedef struct {
    int32_t element_size;
    int32_t inner_contiguous;
    const int32_t *shape;     /* 4 entries */
    const int32_t *offsets;   /* shape[0] + shape[1] + shape[2] + shape[3] entries, bytes */
} tinyml_index_copy_params;

void tinyml_index_copy(const tinyml_index_copy_params *p, const void *input, void *output);

/* SPLIT, SPLIT_V and UNPACK: variadic. Call as tinyml_split(&p, in, out_0, ..., out_{n-1}).
 * For each of outer_size slices of the input, output k receives the next slice_bytes[k]. */
typedef struct {
    int32_t num_outputs;
    int32_t outer_size;
    const int32_t *slice_bytes;   /* num_outputs entries */
} tinyml_split_params;

void tinyml_split(const tinyml_split_params *p, const void *input, ...);

/* RESIZE_BILINEAR int8 (TFLM ResizeBilinearInteger): per output row y, input rows y0[y] and
 * y1[y] weighted by 1024 - wy[y] and wy[y] (same for columns); the 20-bit sum of the four
 * raw codes is rounded half away from zero. */
typedef struct {
    int32_t batches;
    int32_t input_h;
    int32_t input_w;
    int32_t depth;
    int32_t output_h;
    int32_t output_w;
    const int32_t *y0;   /* output_h entries each */
    const int32_t *y1;
    const int32_t *wy;
    const int32_t *x0;   /* output_w entries each */
    const int32_t *x1;
    const int32_t *wx;
} tinyml_resize_bilinear_params;

void tinyml_resize_bilinear_s8(const tinyml_resize_bilinear_params *p, const int8_t *input,
                               int8_t *output);
/* ---- activations_math ops ------------------------------------------------------------------ */

/* LEAKY_RELU: x >= 0 requantized by the identity multiplier, x < 0 by the alpha multiplier
 * (its magnitude; alpha_negative negates the product). In place. */
typedef struct {
    int32_t size;
    int32_t input_zero_point;
    int32_t output_zero_point;
    int32_t alpha_multiplier;
    int32_t alpha_shift;
    int32_t alpha_negative;
    int32_t identity_multiplier;
    int32_t identity_shift;
} tinyml_leaky_relu_params;

void tinyml_leaky_relu_s8(const tinyml_leaky_relu_params *p, const int8_t *input,
                          int8_t *output);

/* PRELU with a constant alpha read at i % alpha_period (the broadcast alpha repeats with that
 * period). tinyml_prelu_s8: a period dividing the channel count (runs on patches);
 * tinyml_prelu_tiled_s8: any period (whole tensors). In place. */
typedef struct {
    int32_t size;
    int32_t alpha_period;
    int32_t input_zero_point;
    int32_t alpha_zero_point;
    int32_t output_zero_point;
    int32_t identity_multiplier;
    int32_t identity_shift;
    int32_t alpha_multiplier;
    int32_t alpha_shift;
    const int8_t *alpha;          /* alpha_period entries */
} tinyml_prelu_params;

void tinyml_prelu_s8(const tinyml_prelu_params *p, const int8_t *input, int8_t *output);
void tinyml_prelu_tiled_s8(const tinyml_prelu_params *p, const int8_t *input, int8_t *output);

/* A 256-entry lookup table indexed by the input code as uint8: TANH, ELU and RSQRT, whose
 * int8 output depends on the input code alone (the table is TFLM's arithmetic evaluated on
 * every code at compile time; ELU's is TFLM's own table). In place. */
typedef struct {
    int32_t size;
    const int8_t *table;          /* 256 entries */
} tinyml_lut_params;

void tinyml_lut_s8(const tinyml_lut_params *p, const int8_t *input, int8_t *output);

/* ABS: |x - input zero point|, requantized when rescale is set, plus the output zero point.
 * In place. */
typedef struct {
    int32_t size;
    int32_t input_zero_point;
    int32_t output_zero_point;
    int32_t rescale;
    int32_t multiplier;
    int32_t shift;
} tinyml_abs_params;

void tinyml_abs_s8(const tinyml_abs_params *p, const int8_t *input, int8_t *output);

/* LOG_SOFTMAX over rows of depth values: exps of the scaled differences to the row maximum
 * summed in Q12.19, their fixed-point log in Q5.26 subtracted; output scale 16/256, zero
 * point 127. In place (each row is read whole before any of it is written). */
typedef struct {
    int32_t rows;
    int32_t depth;
    int32_t input_multiplier;
    int32_t input_left_shift;
    int32_t reverse_scaling_divisor;
    int32_t reverse_scaling_shift;  /* <= 0 */
    int32_t diff_min;
} tinyml_log_softmax_params;

void tinyml_log_softmax_s8(const tinyml_log_softmax_params *p, const int8_t *input,
                           int8_t *output);
/* ---- binary ops: SUB, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE, comparisons, SELECT_V2, logical
 * numpy broadcasting as ADD and MUL (shape / strides as there; *_s8 and tinyml_logical take
 * operands of the output's shape, the *broadcast* variants any). BOOL tensors are one byte,
 * 0 or 1 (TFLite's bool), passed as uint8_t. In place on an operand of the output's shape.
 *
 * SUB (TFLM Sub): ADD's arithmetic with the rescaled second input subtracted.
 * SQUARED_DIFFERENCE (TFLM SquaredDifference): both inputs rescaled as in ADD (left shift 7),
 * their difference squared and rescaled by output_multiplier / output_shift (any shift);
 * act_min / act_max are -128 / 127. Both use tinyml_add_params. */
void tinyml_sub_s8(const tinyml_add_params *p, const int8_t *input1, const int8_t *input2,
                   int8_t *output);
void tinyml_sub_broadcast_s8(const tinyml_add_params *p, const int8_t *input1,
                             const int8_t *input2, int8_t *output);
void tinyml_squared_difference_s8(const tinyml_add_params *p, const int8_t *input1,
                                  const int8_t *input2, int8_t *output);
void tinyml_squared_difference_broadcast_s8(const tinyml_add_params *p, const int8_t *input1,
                                            const int8_t *input2, int8_t *output);

/* MAXIMUM, MINIMUM (TFLM MaximumMinimum): the larger / smaller stored int8 code. */
typedef struct {
    int32_t size;
    const int32_t *shape;
    const int32_t *strides1;
    const int32_t *strides2;
} tinyml_broadcast_params;

void tinyml_maximum_s8(const tinyml_broadcast_params *p, const int8_t *input1,
                       const int8_t *input2, int8_t *output);
void tinyml_maximum_broadcast_s8(const tinyml_broadcast_params *p, const int8_t *input1,
                                 const int8_t *input2, int8_t *output);
void tinyml_minimum_s8(const tinyml_broadcast_params *p, const int8_t *input1,
                       const int8_t *input2, int8_t *output);
void tinyml_minimum_broadcast_s8(const tinyml_broadcast_params *p, const int8_t *input1,
                                 const int8_t *input2, int8_t *output);

/* EQUAL, NOT_EQUAL, GREATER, GREATER_EQUAL, LESS, LESS_EQUAL (TFLM ComparisonWithScaling):
 * each input offset, shifted left by left_shift (8) and rescaled by its own scale, then
 * compared; op: 0 ==, 1 !=, 2 >, 3 >=, 4 <, 5 <=. */
typedef struct {
    int32_t size;
    const int32_t *shape;
    const int32_t *strides1;
    const int32_t *strides2;
    int32_t op;
    int32_t input1_offset;
    int32_t input2_offset;
    int32_t left_shift;
    int32_t input1_multiplier;
    int32_t input1_shift;
    int32_t input2_multiplier;
    int32_t input2_shift;
} tinyml_compare_params;

void tinyml_compare_s8(const tinyml_compare_params *p, const int8_t *input1,
                       const int8_t *input2, uint8_t *output);
void tinyml_compare_broadcast_s8(const tinyml_compare_params *p, const int8_t *input1,
                                 const int8_t *input2, uint8_t *output);

/* SELECT_V2: x where the condition is non-zero, else y (int8 codes copied: x, y and the
 * output share one quantization). strides1 / 2 / 3: condition, x, y. */
typedef struct {
    int32_t size;
    const int32_t *shape;
    const int32_t *strides1;
    const int32_t *strides2;
    const int32_t *strides3;
} tinyml_select_params;

void tinyml_select_s8(const tinyml_select_params *p, const uint8_t *condition,
                      const int8_t *x, const int8_t *y, int8_t *output);
void tinyml_select_broadcast_s8(const tinyml_select_params *p, const uint8_t *condition,
                                const int8_t *x, const int8_t *y, int8_t *output);

/* LOGICAL_AND (is_or 0), LOGICAL_OR (is_or 1), LOGICAL_NOT on bool tensors. */
typedef struct {
    int32_t size;
    const int32_t *shape;
    const int32_t *strides1;
    const int32_t *strides2;
    int32_t is_or;
} tinyml_logical_params;

void tinyml_logical(const tinyml_logical_params *p, const uint8_t *input1,
                    const uint8_t *input2, uint8_t *output);
void tinyml_logical_broadcast(const tinyml_logical_params *p, const uint8_t *input1,
                              const uint8_t *input2, uint8_t *output);

typedef struct {
    int32_t size;
} tinyml_logical_not_params;

void tinyml_logical_not(const tinyml_logical_not_params *p, const uint8_t *input,
                        uint8_t *output);
/* ---- reductions ops ------------------------------------------------------------------------
 * SUM runs tinyml_mean_s8 with an unfolded multiplier. */

/* REDUCE_MAX / REDUCE_MIN, int8, over any axes of an up-to-4-D input (lowering merges adjacent
 * dimensions). Input and output share one quantization, so values are selected, not rescaled. */
typedef struct {
    const int32_t *shape;        /* 4 input dimensions */
    const int32_t *reduced;      /* 4 flags: 1 if the dimension is reduced */
} tinyml_reduce_params;

void tinyml_reduce_max_s8(const tinyml_reduce_params *p, const int8_t *input, int8_t *output);
void tinyml_reduce_min_s8(const tinyml_reduce_params *p, const int8_t *input, int8_t *output);

/* ARG_MAX / ARG_MIN along one axis: the input viewed as [outer, axis, inner]; int32 indices of
 * the first largest (smallest) element. */
typedef struct {
    int32_t outer_size;
    int32_t axis_size;
    int32_t inner_size;
} tinyml_arg_params;

void tinyml_arg_max_s8(const tinyml_arg_params *p, const int8_t *input, int32_t *output);
void tinyml_arg_min_s8(const tinyml_arg_params *p, const int8_t *input, int32_t *output);

/* L2_NORMALIZATION along the last axis; the output is Q0.7 (scale 1/128, zero point 0).
 * In place. */
typedef struct {
    int32_t outer_size;
    int32_t depth;
    int32_t input_zero_point;
} tinyml_l2_normalization_params;

void tinyml_l2_normalization_s8(const tinyml_l2_normalization_params *p, const int8_t *input,
                                int8_t *output);
/* ---- conv ops: convolution variants and their data movement (portable/conv_family.c) ---- */

/* SPACE_TO_BATCH_ND, int8 (TFLM's reference SpaceToBatchND; a 3-D NHC tensor is NH1C with
 * block_w 1). Output batch b holds input image b % batches shifted by the block offset
 * (b / batches) = shift_h * block_w + shift_w; positions in the padding get pad_value (the
 * output zero point). */
typedef struct {
    int32_t batches;
    int32_t input_h;
    int32_t input_w;
    int32_t depth;
    int32_t block_h;
    int32_t block_w;
    int32_t pad_top;
    int32_t pad_left;
    int32_t output_batches;
    int32_t output_h;
    int32_t output_w;
    int32_t pad_value;
} tinyml_space_to_batch_params;

void tinyml_space_to_batch_nd_s8(const tinyml_space_to_batch_params *p, const int8_t *input,
                                 int8_t *output);

/* BATCH_TO_SPACE_ND, int8 (TFLM's reference BatchToSpaceND): input batch b is written to
 * image b % output_batches at block offset b / output_batches, minus the crops; pixels
 * cropped away are skipped. */
typedef struct {
    int32_t input_batches;
    int32_t input_h;
    int32_t input_w;
    int32_t depth;
    int32_t block_h;
    int32_t block_w;
    int32_t crop_top;
    int32_t crop_left;
    int32_t output_batches;
    int32_t output_h;
    int32_t output_w;
} tinyml_batch_to_space_params;

void tinyml_batch_to_space_nd_s8(const tinyml_batch_to_space_params *p, const int8_t *input,
                                 int8_t *output);

/* TRANSPOSE_CONV, int8 with per-channel requantization (TFLM's reference_integer_ops::
 * TransposeConv). TFLM scatters every input pixel into an int32 canvas the size of the
 * output; this kernel gathers instead: output (oy, ox, oc) sums (x + input_offset) * w over
 * the filter taps (ky, kx) with oy + pad_top - ky = iy * stride_h (and the same for x) for an
 * input pixel (iy, ix) inside the input. Integer sums do not depend on their order, so the
 * result is TFLM's bit for bit, without the canvas. Filter OHWI. */
typedef struct {
    int32_t batches;
    int32_t input_h;
    int32_t input_w;
    int32_t input_c;
    int32_t output_h;
    int32_t output_w;
    int32_t output_c;
    int32_t filter_h;
    int32_t filter_w;
    int32_t stride_h;
    int32_t stride_w;
    int32_t pad_top;
    int32_t pad_left;
    int32_t input_offset;
    int32_t output_offset;
    int32_t act_min;
    int32_t act_max;
    const int8_t *filter;       /* [output_c][filter_h][filter_w][input_c] */
    const int32_t *bias;        /* [output_c] */
    const int32_t *multiplier;  /* [output_c] */
    const int32_t *shift;       /* [output_c] */
} tinyml_transpose_conv_params;

void tinyml_transpose_conv_s8(const tinyml_transpose_conv_params *p, const int8_t *input,
                              int8_t *output);

/* ---- BATCH_MATMUL ----------------------------------------------------------------------------
 * For each of `batches` output matrices m (rows x cols, row-major, one after the other):
 * out[m][a][c] = requantize(sum_k (lhs[a][k] + lhs_offset) * (rhs[k][c] + rhs_offset)), the
 * full int8 range (no fused activation). lhs element (a, k) of matrix m is at
 * lhs_offsets[m] + a * lhs_row_stride + k * lhs_depth_stride, rhs element (k, c) at
 * rhs_offsets[m] + k * rhs_depth_stride + c * rhs_col_stride: broadcasting repeats an offset,
 * adj_x / adj_y swap the strides. Either operand may be a constant. */
typedef struct {
    int32_t batches;
    const int32_t *lhs_offsets;   /* batches entries */
    const int32_t *rhs_offsets;   /* batches entries */
    int32_t rows;
    int32_t depth;
    int32_t cols;
    int32_t lhs_row_stride;
    int32_t lhs_depth_stride;
    int32_t rhs_depth_stride;
    int32_t rhs_col_stride;
    int32_t lhs_offset;           /* -lhs zero point */
    int32_t rhs_offset;           /* -rhs zero point */
    int32_t output_offset;
    int32_t multiplier;
    int32_t shift;
} tinyml_batch_matmul_params;

void tinyml_batch_matmul_s8(const tinyml_batch_matmul_params *p, const int8_t *lhs,
                            const int8_t *rhs, int8_t *output);

/* ---- 16x8 kernels (int16 activations, int8 weights) -------------------------------------
 * TFLite's 16x8 scheme: activations int16 with zero point 0, weights int8 per channel,
 * CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED with an int64 bias. Those accumulate in int64
 * and requantize with TFLM's int64 MultiplyByQuantizedMultiplier (the multiplier reduced to
 * 16 bits, one rounding shift); with an int32 bias (int32_accumulator) TFLM wraps an int32
 * sum and requantizes as the int8 kernels do. The other kernels are TFLM's int8 templates at
 * int16. No kernel here runs on a patch or in place.
 */
typedef struct {
    int32_t batches;
    int32_t input_h;
    int32_t input_w;
    int32_t input_c;
    int32_t output_h;
    int32_t output_w;
    int32_t output_c;
    int32_t filter_h;
    int32_t filter_w;
    int32_t filter_c;
    int32_t stride_h;
    int32_t stride_w;
    int32_t dilation_h;
    int32_t dilation_w;
    int32_t pad_top;
    int32_t pad_left;
    int32_t act_min;
    int32_t act_max;
    const int8_t *filter;        /* OHWI, as CONV_2D int8 */
    int32_t int32_accumulator;   /* 1: an int32 bias (TFLM then wraps an int32 sum) */
    const int64_t *bias;         /* output_c entries (zeros when the layer has none) */
    const int32_t *multiplier;   /* output_c entries */
    const int32_t *shift;        /* output_c entries */
} tinyml_conv2d_s16_params;

/* CONV_2D: acc = bias[oc] + sum over taps inside the image of input * filter (int64). The
 * scratch is unused by the portable kernel; the DSP kernel copies input windows there. */
void tinyml_conv2d_s16(const tinyml_conv2d_s16_params *p, const int16_t *input,
                       int16_t *output, int8_t *scratch);

typedef struct {
    int32_t batches;
    int32_t input_h;
    int32_t input_w;
    int32_t input_c;
    int32_t output_h;
    int32_t output_w;
    int32_t depth_multiplier;
    int32_t filter_h;
    int32_t filter_w;
    int32_t stride_h;
    int32_t stride_w;
    int32_t dilation_h;
    int32_t dilation_w;
    int32_t pad_top;
    int32_t pad_left;
    int32_t act_min;
    int32_t act_max;
    const int8_t *filter;        /* [output_c][filter_h][filter_w], channel-major */
    int32_t int32_accumulator;   /* 1: an int32 bias (TFLM then wraps an int32 sum) */
    const int64_t *bias;         /* output_c = input_c * depth_multiplier entries */
    const int32_t *multiplier;
    const int32_t *shift;
} tinyml_depthwise_conv2d_s16_params;

/* DEPTHWISE_CONV_2D: output channel c * depth_multiplier + m reads input channel c. */
void tinyml_depthwise_conv2d_s16(const tinyml_depthwise_conv2d_s16_params *p,
                                 const int16_t *input, int16_t *output);

typedef struct {
    int32_t batches;
    int32_t input_depth;
    int32_t output_depth;
    int32_t act_min;
    int32_t act_max;
    const int8_t *filter;        /* [output_depth][input_depth] */
    int32_t int32_accumulator;   /* 1: an int32 bias (TFLM then wraps an int32 sum) */
    const int64_t *bias;         /* output_depth entries */
    const int32_t *multiplier;   /* output_depth entries (one value repeated per tensor) */
    const int32_t *shift;
} tinyml_fully_connected_s16_params;

void tinyml_fully_connected_s16(const tinyml_fully_connected_s16_params *p,
                                const int16_t *input, int16_t *output);

/* ADD (left_shift 15: TFLM's general int16 path), MUL, pooling, MEAN: the int8 parameter
 * structs, outputs clamped to int16. */
void tinyml_add_s16(const tinyml_add_params *p, const int16_t *input1, const int16_t *input2,
                    int16_t *output);
void tinyml_add_broadcast_s16(const tinyml_add_params *p, const int16_t *input1,
                              const int16_t *input2, int16_t *output);
void tinyml_mul_s16(const tinyml_mul_params *p, const int16_t *input1, const int16_t *input2,
                    int16_t *output);
void tinyml_mul_broadcast_s16(const tinyml_mul_params *p, const int16_t *input1,
                              const int16_t *input2, int16_t *output);
void tinyml_avg_pool2d_s16(const tinyml_pool2d_params *p, const int16_t *input,
                           int16_t *output);
void tinyml_max_pool2d_s16(const tinyml_pool2d_params *p, const int16_t *input,
                           int16_t *output);
void tinyml_mean_s16(const tinyml_mean_params *p, const int16_t *input, int16_t *output);

/* SOFTMAX int16 -> int16 (TFLM SoftmaxInt16): two 513-entry interpolated tables, exp on
 * [-10, 0] and 1 / (1 + x) on [0, 1], built by lowering as TFLM builds them in Prepare. */
typedef struct {
    int32_t rows;
    int32_t depth;
    int32_t input_multiplier;
    int32_t input_left_shift;
    const int16_t *exp_lut;
    const int16_t *reciprocal_lut;
} tinyml_softmax_s16_params;

void tinyml_softmax_s16(const tinyml_softmax_s16_params *p, const int16_t *input,
                        int16_t *output);

/* LOGISTIC and TANH int16 -> int16 (TFLM's interpolated sigmoid table). In place. */
typedef struct {
    int32_t size;
    int32_t input_multiplier;    /* 0: power-of-two input scale (3 << input_left_shift) */
    int32_t input_left_shift;
} tinyml_sigmoid_s16_params;

void tinyml_logistic_s16(const tinyml_sigmoid_s16_params *p, const int16_t *input,
                         int16_t *output);
void tinyml_tanh_s16(const tinyml_sigmoid_s16_params *p, const int16_t *input,
                     int16_t *output);

/* QUANTIZE float32 -> int16, int16 -> int16 / int16 -> int8 / int8 -> int16 (requantize), and
 * DEQUANTIZE int16 -> float32: the int8 parameter structs. */
void tinyml_quantize_f32_s16(const tinyml_quantize_params *p, const float *input,
                             int16_t *output);
void tinyml_requantize_s16(const tinyml_requantize_params *p, const int16_t *input,
                           int16_t *output);
/* int8 -> int16 and int16 -> int8 requantization: where a mixed model's int8 and 16x8
 * layers meet. */
void tinyml_requantize_s8_s16(const tinyml_requantize_params *p, const int8_t *input,
                              int16_t *output);
void tinyml_requantize_s16_s8(const tinyml_requantize_params *p, const int16_t *input,
                              int8_t *output);
void tinyml_dequantize_s16_f32(const tinyml_dequantize_params *p, const int16_t *input,
                               float *output);

/* ---- streaming ops ---------------------------------------------------------------------- */

/* READ_VARIABLE and ASSIGN_VARIABLE: copy a variable (static storage outside the arena) into
 * the arena, or a new value back into it. */
typedef struct {
    int32_t bytes;
} tinyml_variable_copy_params;

void tinyml_variable_copy(const tinyml_variable_copy_params *p, const void *input,
                          void *output);

/* SVDF (int8 input and output, int32 bias; state and time weights int16, or int8 in TFLM's
 * 8-bit variant): one step of the rank-`rank` filter over the last `memory` frames. `state`
 * [batches][filters][memory] is the op's variable, updated in place (shift, newest column);
 * filters = units * rank. */
typedef struct {
    int32_t batches;
    int32_t input_size;
    int32_t filters;
    int32_t memory;
    int32_t rank;
    int32_t input_offset;        /* -input zero point */
    int32_t state_zero_point;
    int32_t output_zero_point;
    int32_t multiplier_1;        /* input * feature / state scales */
    int32_t shift_1;
    int32_t multiplier_2;        /* state * time / output scales */
    int32_t shift_2;
    const int8_t *weights_feature;   /* [filters][input_size] */
    const void *weights_time;        /* [filters][memory], the state's type */
    const int32_t *bias;             /* [units] */
} tinyml_svdf_params;

void tinyml_svdf_s8_s16(const tinyml_svdf_params *p, const int8_t *input, int16_t *state,
                        int8_t *output);
void tinyml_svdf_s8_s8(const tinyml_svdf_params *p, const int8_t *input, int8_t *state,
                       int8_t *output);

/* ---- sequence ops ---------------------------------------------------------------------- */

/* UNIDIRECTIONAL_SEQUENCE_LSTM, full int8 (lstm.c). Gates in TFLite's order (input, forget,
 * cell, output): rows [gate * units, (gate + 1) * units) of the weights and biases. */
typedef struct {
    int32_t batch;
    int32_t time;
    int32_t features;
    int32_t units;
    int32_t time_major;
    const int8_t *input_weights;      /* [4 * units][features] */
    const int8_t *recurrent_weights;  /* [4 * units][units] */
    const int32_t *input_bias;        /* bias + input offset * row sums */
    const int32_t *recurrent_bias;    /* hidden offset * row sums */
    const int32_t *input_multiplier;  /* [4], into the gates' Q3.12 */
    const int32_t *input_shift;
    const int32_t *recurrent_multiplier;
    const int32_t *recurrent_shift;
    int32_t forget_multiplier;        /* f * c -> c */
    int32_t forget_shift;
    int32_t update_multiplier;        /* i * g -> c */
    int32_t update_shift;
    int32_t hidden_multiplier;        /* tanh(c) * o -> h */
    int32_t hidden_shift;
    int32_t hidden_zero_point;
    int32_t cell_clip;                /* 0: none */
    int32_t cell_tanh_multiplier;     /* tanh(c)'s input rescaling (0: 3 << shift) */
    int32_t cell_tanh_shift;
} tinyml_lstm_params;

/* ``scratch``: 4 * units int16. ``hidden`` and ``cell`` are updated in place. */
void tinyml_lstm_s8(const tinyml_lstm_params *p, const int8_t *input, int8_t *hidden,
                    int16_t *cell, int8_t *output, void *scratch);

/* acc + x . w over n int8 values: the inner loop of the LSTM and, on DSP cores, of
 * FULLY_CONNECTED (dot_s8.c; a DSP version in cortex_m/). */
int32_t tinyml_dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t acc);
/* acc[r] += x . (w + r * n) for rows r = 0..3 of n values each. */
void tinyml_dot4_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t *acc);

#ifdef __cplusplus
}
#endif

#endif /* TINYML_KERNELS_H */
