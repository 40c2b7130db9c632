package dev.patchcore.backend.cuda;

import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUstream;

/**
 * Raw addresses across the JCuda / FFM border. JCuda keeps a pointer's value in a protected field, so small
 * subclasses read it; the other way, {@code new CUdeviceptr().withByteOffset(address)} makes a JCuda pointer whose
 * native value (0) plus offset is the address.
 */
final class DevicePointers {
    private DevicePointers() {}

    /** A CUdeviceptr whose address can be read after cuMemAlloc filled it. */
    static final class Allocated extends CUdeviceptr {
        long address() { return getNativePointer() + getByteOffset(); }
    }

    /** A stream whose CUstream handle can be passed to cuBLASLt. */
    static final class Stream extends CUstream {
        long handle() { return getNativePointer(); }
    }

    static CUdeviceptr at(long address) { return new CUdeviceptr().withByteOffset(address); }
}
