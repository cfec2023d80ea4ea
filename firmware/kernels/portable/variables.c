/*
 * Streaming state: READ_VARIABLE and ASSIGN_VARIABLE copy bytes between a variable (static
 * storage the generated model.c keeps outside the arena, so it survives from one
 * tinyml_invoke() to the next) and an arena tensor, as TFLM's kernels copy between the
 * resource buffer and the tensor.
 */
#include <string.h>

#include "tinyml_kernels.h"

void tinyml_variable_copy(const tinyml_variable_copy_params *p, const void *input,
                          void *output)
{
    memcpy(output, input, (size_t)p->bytes);
}
