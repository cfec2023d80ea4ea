/*
 * TFLM benchmark firmware: one model, one input, on an emulated Cortex-M (QEMU -icount).
 *
 * The model (.tflite bytes) and the input (every input tensor's bytes, in input order) are
 * linked in by model_data.S; model_ops.h (generated per model) registers the builtins the
 * model uses in a MicroMutableOpResolver, with the default registrations: TFLM's reference
 * kernels, or the CMSIS-NN ones when the library was built with the cmsis_nn overrides.
 *
 * It runs Invoke() twice on the same input (copied in before each: TFLM's memory planner
 * may reuse the input tensors' bytes for later tensors):
 *   1. with the profiler switched off: the total instructions of one inference;
 *   2. with the profiler on: SysTick ticks of each operator (TFLM's MicroProfilerInterface
 *      wraps every operator's invoke in BeginEvent/EndEvent; this is TFLM's MicroProfiler
 *      with tinyml's SysTick counter as the clock, in 64 bits so no wrap is lost).
 * Under QEMU's -icount shift=0 a tick is a fixed number of instructions (targets/*.toml,
 * systick_hz). The counter is tinyml's own (firmware/cortex_m/counter.c), as in tinyml's
 * harness, so both sides are timed by the same code.
 *
 * Results go to the semihosting console, one fact per line, all prefixed "tflm_bench":
 *   arena_used_bytes <n>          interpreter.arena_used_bytes() after AllocateTensors
 *   invoke_ticks <n>              ticks of Invoke() #1
 *   output <i> <bytes> <hex>      output i after Invoke() #1
 *   profiled_ticks <n>            ticks of Invoke() #2 (profiled)
 *   layer <k> <tag> <ticks>       operator k of Invoke() #2
 *   profiled_output <i> <bytes> <hex>
 *   done
 * Exit status: 0, or 20 (schema version), 21 (op resolver), 22 (AllocateTensors), 23 (input
 * size), 24 (Invoke), 25 (too many operators for the profiler).
 */
#include <cerrno>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/schema/schema_generated.h"

extern "C" {
#include "console.h"
#include "counter.h"
}

#include "model_ops.h"

extern "C" const uint8_t tflm_bench_model[];
extern "C" const uint8_t tflm_bench_input[];
extern "C" const uint8_t tflm_bench_input_end[];

#ifndef TFLM_BENCH_ARENA_BYTES
#define TFLM_BENCH_ARENA_BYTES (1024 * 1024)
#endif
#ifndef TFLM_BENCH_MAX_EVENTS
#define TFLM_BENCH_MAX_EVENTS 512
#endif

alignas(16) static uint8_t arena[TFLM_BENCH_ARENA_BYTES];

// TFLM's log sink (tensorflow/lite/micro/debug_log.h), as the cortex_m_generic target's:
// formatted into a buffer, then written to the semihosting console.
extern "C" void DebugLog(const char* format, va_list args) {
  char line[256];
  vsnprintf(line, sizeof line, format, args);
  console_write(line);
}

extern "C" int DebugVsnprintf(char* buffer, size_t buf_size, const char* format,
                              va_list vlist) {
  return vsnprintf(buffer, buf_size, format, vlist);
}

// No heap: TFLM allocates everything in the arena. newlib's vsnprintf refers to malloc (for
// cases TFLM's log lines never reach); this makes such a malloc fail instead of needing a
// heap region in the linker script.
extern "C" void* _sbrk(ptrdiff_t) {
  errno = ENOMEM;
  return reinterpret_cast<void*>(-1);
}

namespace {

// MicroProfilerInterface with SysTick ticks; off (a flag test) during the timed Invoke().
class TickProfiler : public tflite::MicroProfilerInterface {
 public:
  uint32_t BeginEvent(const char* tag) override {
    if (!enabled_ || count_ >= TFLM_BENCH_MAX_EVENTS) {
      overflow_ = overflow_ || enabled_;
      return TFLM_BENCH_MAX_EVENTS;
    }
    tags_[count_] = tag;
    start_[count_] = tinyml_counter_ticks();
    return count_++;
  }
  void EndEvent(uint32_t handle) override {
    if (handle < TFLM_BENCH_MAX_EVENTS) {
      end_[handle] = tinyml_counter_ticks();
    }
  }
  void Enable() { enabled_ = true; }
  uint32_t count() const { return count_; }
  bool overflow() const { return overflow_; }
  const char* tag(uint32_t k) const { return tags_[k]; }
  uint64_t ticks(uint32_t k) const { return end_[k] - start_[k]; }

 private:
  bool enabled_ = false;
  bool overflow_ = false;
  uint32_t count_ = 0;
  const char* tags_[TFLM_BENCH_MAX_EVENTS];
  uint64_t start_[TFLM_BENCH_MAX_EVENTS];
  uint64_t end_[TFLM_BENCH_MAX_EVENTS];
  TF_LITE_REMOVE_VIRTUAL_DELETE
};

void print_value(const char* key, uint64_t value) {
  char line[96];
  char* p = format_str(line, "tflm_bench ");
  p = format_str(p, key);
  p = format_str(p, " ");
  p = format_u64(p, value);
  format_str(p, "\n");
  console_write(line);
}

void print_outputs(tflite::MicroInterpreter& interpreter, const char* key) {
  static const char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < interpreter.outputs_size(); ++i) {
    const TfLiteTensor* tensor = interpreter.output(i);
    const uint8_t* bytes = reinterpret_cast<const uint8_t*>(tensor->data.raw);
    char line[160];
    char* p = format_str(line, "tflm_bench ");
    p = format_str(p, key);
    p = format_str(p, " ");
    p = format_u64(p, i);
    p = format_str(p, " ");
    p = format_u64(p, tensor->bytes);
    format_str(p, " ");
    console_write(line);
    size_t done = 0;
    while (done < tensor->bytes) {
      size_t n = 0;
      for (; n < 64 && done < tensor->bytes; ++n, ++done) {
        line[2 * n] = kHex[bytes[done] >> 4];
        line[2 * n + 1] = kHex[bytes[done] & 15];
      }
      line[2 * n] = '\0';
      console_write(line);
    }
    console_write("\n");
  }
}

// Copies the embedded input into the input tensors; false if the sizes do not add up.
bool load_inputs(tflite::MicroInterpreter& interpreter) {
  const uint8_t* input = tflm_bench_input;
  for (size_t i = 0; i < interpreter.inputs_size(); ++i) {
    TfLiteTensor* tensor = interpreter.input(i);
    if (input + tensor->bytes > tflm_bench_input_end) {
      return false;
    }
    memcpy(tensor->data.raw, input, tensor->bytes);
    input += tensor->bytes;
  }
  return input == tflm_bench_input_end;
}

int fail(const char* message, int status) {
  console_write("tflm_bench error ");
  console_write(message);
  console_write("\n");
  return status;
}

}  // namespace

int main(void) {
  // startup.c runs no C++ static constructors (the Python side checks the image has none):
  // objects with constructors are locals of main().
  TickProfiler profiler;
  const tflite::Model* model = tflite::GetModel(tflm_bench_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    return fail("model schema version differs from TFLM's", 20);
  }
  tflite::MicroMutableOpResolver<TFLM_BENCH_OP_COUNT> resolver;
  if (tflm_bench_add_ops(resolver) != kTfLiteOk) {
    return fail("could not register the model's operators", 21);
  }
  tflite::MicroInterpreter interpreter(model, resolver, arena, sizeof arena, nullptr,
                                       &profiler);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    return fail("AllocateTensors() failed", 22);
  }
  print_value("arena_used_bytes", interpreter.arena_used_bytes());

  if (!load_inputs(interpreter)) {
    return fail("the embedded input does not match the model's input sizes", 23);
  }
  tinyml_counter_start();
  uint64_t start = tinyml_counter_ticks();
  TfLiteStatus status = interpreter.Invoke();
  uint64_t ticks = tinyml_counter_ticks() - start;
  if (status != kTfLiteOk) {
    return fail("Invoke() failed", 24);
  }
  print_value("invoke_ticks", ticks);
  print_outputs(interpreter, "output");

  // Again, from the same state: Reset() restores the variable tensors (an LSTM's state)
  // Invoke() #1 updated; the memory planner may have reused the input tensors' bytes.
  if (interpreter.Reset() != kTfLiteOk) {
    return fail("Reset() failed", 24);
  }
  if (!load_inputs(interpreter)) {
    return fail("the embedded input does not match the model's input sizes", 23);
  }
  profiler.Enable();
  start = tinyml_counter_ticks();
  status = interpreter.Invoke();
  ticks = tinyml_counter_ticks() - start;
  if (status != kTfLiteOk) {
    return fail("profiled Invoke() failed", 24);
  }
  if (profiler.overflow()) {
    return fail("more operator events than TFLM_BENCH_MAX_EVENTS", 25);
  }
  print_value("profiled_ticks", ticks);
  for (uint32_t k = 0; k < profiler.count(); ++k) {
    char line[160];
    char* p = format_str(line, "tflm_bench layer ");
    p = format_u64(p, k);
    p = format_str(p, " ");
    p = format_str(p, profiler.tag(k) ? profiler.tag(k) : "?");
    p = format_str(p, " ");
    p = format_u64(p, profiler.ticks(k));
    format_str(p, "\n");
    console_write(line);
  }
  print_outputs(interpreter, "profiled_output");
  console_write("tflm_bench done\n");
  return 0;
}
