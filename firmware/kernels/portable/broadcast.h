/*
 * The broadcast loop of the two-operand element-wise kernels (ADD, MUL and the binary
 * family): numpy broadcasting over 4 dimensions. p->shape holds the output dimensions,
 * p->strides1 / p->strides2 each input's element strides (0 where it broadcasts), both
 * computed by lowering. The output is written in order, each element after its inputs are
 * read, and ELEMENT(p, a, b) computes one output element from one element of each input.
 */
#ifndef TINYML_BROADCAST_H
#define TINYML_BROADCAST_H

#include <stdint.h>

#define TINYML_BROADCAST_LOOP(P, TYPE1, INPUT1, TYPE2, INPUT2, OUTPUT, ELEMENT)             \
    do {                                                                                    \
        const int32_t *d_ = (P)->shape;                                                     \
        const int32_t *s1_ = (P)->strides1;                                                 \
        const int32_t *s2_ = (P)->strides2;                                                 \
        int32_t i0_, i1_, i2_, i3_;                                                         \
        for (i0_ = 0; i0_ < d_[0]; ++i0_) {                                                 \
            for (i1_ = 0; i1_ < d_[1]; ++i1_) {                                             \
                for (i2_ = 0; i2_ < d_[2]; ++i2_) {                                         \
                    const TYPE1 *a_ = (INPUT1) + i0_ * s1_[0] + i1_ * s1_[1] + i2_ * s1_[2];\
                    const TYPE2 *b_ = (INPUT2) + i0_ * s2_[0] + i1_ * s2_[1] + i2_ * s2_[2];\
                    for (i3_ = 0; i3_ < d_[3]; ++i3_) {                                     \
                        *(OUTPUT)++ = ELEMENT((P), a_[i3_ * s1_[3]], b_[i3_ * s2_[3]]);     \
                    }                                                                       \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    } while (0)

#endif
