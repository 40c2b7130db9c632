package dev.patchcore.backend.cuda;

import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import jcuda.NativePointerObject;
import jcuda.Pointer;
import org.junit.jupiter.api.Test;

import java.lang.foreign.ValueLayout;
import java.lang.reflect.Field;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The packed kernel-argument slots (launch variant 2) without a GPU: what the driver will read, and where. */
class ArgSlotsTest {
    @Test
    void eachArgumentLandsInItsOwnEightByteSlotInNativeOrder() throws ReflectiveOperationException {
        CudaRuntime.ArgSlots slots = new CudaRuntime.ArgSlots();
        Tensor t = new Tensor(new CudaStorage(0x7f00_1234_5600L, 64), DType.F32, 16);
        var params = slots.fill("k", new Object[] {t, -7, 1L << 40, 2.5f, 0L});
        assertSame(slots.byArity[5], params, "built once per argument count, reused by every launch");
        Object[] elements = (Object[]) field(Pointer.class, "pointers", params);
        assertEquals(5, elements.length, "JCuda walks every element: exactly the kernel's argument count");
        for (int i = 0; i < 5; i++) assertSame(slots.slots[i], elements[i]);
        long base = slots.values.address();
        assertEquals(0, base % 16);
        for (int i = 0; i < CudaRuntime.ArgSlots.MAX_ARGS; i++)
            assertEquals(base + 8L * i, address(slots.slots[i]), "slot " + i + " points at its 8 bytes");
        assertEquals(0x7f00_1234_5600L, slots.values.get(ValueLayout.JAVA_LONG, 0), "device address of the tensor");
        assertEquals(-7, slots.values.get(ValueLayout.JAVA_INT, 8));
        assertEquals(1L << 40, slots.values.get(ValueLayout.JAVA_LONG, 16));
        assertEquals(2.5f, slots.values.get(ValueLayout.JAVA_FLOAT, 24));
        assertEquals(0L, slots.values.get(ValueLayout.JAVA_LONG, 32), "a null pointer");
        // A second launch overwrites the slots it uses.
        slots.fill("k", new Object[] {3});
        assertEquals(3, slots.values.get(ValueLayout.JAVA_INT, 0));
    }

    @Test
    void tensorMapsGoByValueThroughTheirOwnNativeSlots() throws ReflectiveOperationException {
        CudaRuntime.ArgSlots slots = new CudaRuntime.ArgSlots();
        Tensor t = new Tensor(new CudaStorage(0x7f00_0000_1000L, 64), DType.F32, 16);
        byte[] a = new byte[TensorMaps.BYTES], b = new byte[TensorMaps.BYTES];
        for (int i = 0; i < a.length; i++) {
            a[i] = (byte) i;
            b[i] = (byte) (255 - i);
        }
        var params = slots.fill("k", new Object[] {t, new TensorMaps.TensorMap(a), 9, new TensorMaps.TensorMap(b)});
        Object[] elements = (Object[]) field(Pointer.class, "pointers", params);
        assertEquals(4, elements.length);
        assertSame(slots.slots[0], elements[0]);
        assertSame(slots.mapSlots[0], elements[1], "the first map in the first map slot");
        assertSame(slots.slots[2], elements[2]);
        assertSame(slots.mapSlots[1], elements[3]);
        assertEquals(0, address(slots.mapSlots[0]) % 64, "CUtensorMap alignment");
        assertEquals(address(slots.mapSlots[0]) + TensorMaps.BYTES, address(slots.mapSlots[1]));
        for (int i = 0; i < TensorMaps.BYTES; i++) {
            assertEquals(a[i], slots.maps.get(ValueLayout.JAVA_BYTE, i));
            assertEquals(b[i], slots.maps.get(ValueLayout.JAVA_BYTE, TensorMaps.BYTES + i));
        }
        assertEquals(9, slots.values.get(ValueLayout.JAVA_INT, 16));
        // Without maps the shared per-arity array again; more maps than slots: one clear error.
        assertSame(slots.byArity[4], slots.fill("k", new Object[] {t, 1, 2, 3}));
        Object[] five = new Object[5];
        java.util.Arrays.fill(five, new TensorMaps.TensorMap(a));
        assertThrows(IllegalArgumentException.class, () -> slots.fill("k", five));
    }

    /** What JCuda hands the driver for a pointer without buffer or array: its native value plus its byte offset. */
    private static long address(Object pointer) throws ReflectiveOperationException {
        Field offset = Pointer.class.getDeclaredField("byteOffset"), value = NativePointerObject.class.getDeclaredField("nativePointer");
        offset.setAccessible(true);
        value.setAccessible(true);
        assertNull(field(Pointer.class, "buffer", pointer), "no buffer");
        assertNull(field(Pointer.class, "pointers", pointer), "no pointer array");
        return value.getLong(pointer) + offset.getLong(pointer);
    }

    private static Object field(Class<?> c, String name, Object o) throws ReflectiveOperationException {
        Field f = c.getDeclaredField(name);
        f.setAccessible(true);
        return f.get(o);
    }

    @Test
    void rejectsWhatTheDefaultPathRejects() {
        CudaRuntime.ArgSlots slots = new CudaRuntime.ArgSlots();
        assertThrows(IllegalArgumentException.class, () -> slots.fill("k", new Object[] {1, null}));
        assertThrows(IllegalArgumentException.class, () -> slots.fill("k", new Object[] {1.0}));
        assertThrows(IllegalArgumentException.class, () -> slots.fill("k", new Object[CudaRuntime.ArgSlots.MAX_ARGS + 1]));
        // The default marshalling rejects the same arguments with the same message.
        assertEquals(assertThrows(IllegalArgumentException.class, () -> slots.fill("k", new Object[] {null})).getMessage(),
                assertThrows(IllegalArgumentException.class, () -> KernelArgs.pointerTo(null, "k", 0)).getMessage());
        assertThrows(IllegalArgumentException.class, () -> KernelArgs.pointerTo(1.0, "k", 0));
    }
}
