package dev.patchcore.backend.cuda;

import dev.patchcore.tensor.Tensor;
import jcuda.Pointer;

/** Marshals one kernel argument into the pointer cuLaunchKernel expects (a pointer to the argument's value). */
final class KernelArgs {
    private KernelArgs() {}

    static Pointer pointerTo(Object arg, String kernel, int index) {
        return switch (arg) {
            case Tensor t -> Pointer.to(new long[] {CudaStorage.addressOf(t)});
            case Integer i -> Pointer.to(new int[] {i});
            case Long l -> Pointer.to(new long[] {l});
            case Float f -> Pointer.to(new float[] {f});
            case TensorMaps.TensorMap m -> Pointer.to(m.bytes());  // a CUtensorMap by value (128 bytes)
            case null, default -> throw unsupported(arg, kernel, index);
        };
    }

    /** The one error for an argument that is null or of a kind no launch path marshals. */
    static IllegalArgumentException unsupported(Object arg, String kernel, int index) {
        return arg == null
                ? new IllegalArgumentException("kernel " + kernel + " argument " + index + " is null")
                : new IllegalArgumentException("kernel " + kernel + " argument " + index + " has unsupported type "
                        + arg.getClass().getSimpleName() + " (Tensor, Integer, Long, Float, TensorMap only)");
    }
}
