package dev.patchcore.backend.cuda;

import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The host side of TMA tensor maps: what a map request may ask for, and the encoder without a driver. */
class TensorMapsTest {
    @Test
    void requestsTheDriverWouldRefuseAreRefusedHere() {
        long at = 1L << 20;
        long[] dims = {128, 8, 2048, 4}, strides = {256, 2048, 2048L * 2048};
        new TensorMaps.Bf16Tiled(at, dims, strides, new int[] {64, 1, 128, 1});  // variant 6's K map: fine
        assertThrows(IllegalArgumentException.class, () -> new TensorMaps.Bf16Tiled(at + 2, dims, strides, new int[] {64, 1, 128, 1}),
                "16-byte aligned address");
        assertThrows(IllegalArgumentException.class, () -> new TensorMaps.Bf16Tiled(at, dims, new long[] {256, 2050, 1 << 22}, new int[] {64, 1, 128, 1}),
                "strides in multiples of 16 bytes");
        assertThrows(IllegalArgumentException.class, () -> new TensorMaps.Bf16Tiled(at, dims, strides, new int[] {128, 1, 128, 1}),
                "a 128-byte swizzled row holds 64 bf16");
        assertThrows(IllegalArgumentException.class, () -> new TensorMaps.Bf16Tiled(at, dims, strides, new int[] {64, 1, 512, 1}),
                "boxes of at most 256");
        assertThrows(IllegalArgumentException.class, () -> new TensorMaps.Bf16Tiled(at, dims, new long[] {256, 2048}, new int[] {64, 1, 128, 1}),
                "rank − 1 strides");
        assertThrows(IllegalArgumentException.class, () -> new TensorMaps.TensorMap(new byte[64]));
    }

    @Test
    void enumValuesMatchCudaH() throws Exception {
        Path header = Path.of("/usr/local/cuda/targets/x86_64-linux/include/cuda.h");
        if (!Files.exists(header)) header = Path.of("/usr/local/cuda-13.0/targets/x86_64-linux/include/cuda.h");
        org.junit.jupiter.api.Assumptions.assumeTrue(Files.exists(header), "no cuda.h on this machine");
        String h = Files.readString(header);
        // The enums count up from 0 in declaration order; check each constant's position.
        assertEquals(TensorMaps.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, position(h, "CUtensorMapDataType_enum", "CU_TENSOR_MAP_DATA_TYPE_BFLOAT16"));
        assertEquals(TensorMaps.CU_TENSOR_MAP_SWIZZLE_128B, position(h, "CUtensorMapSwizzle_enum", "CU_TENSOR_MAP_SWIZZLE_128B"));
        assertEquals(TensorMaps.CU_TENSOR_MAP_L2_PROMOTION_L2_256B, position(h, "CUtensorMapL2promotion_enum", "CU_TENSOR_MAP_L2_PROMOTION_L2_256B"));
        assertEquals(TensorMaps.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE, position(h, "CUtensorMapFloatOOBfill_enum", "CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE"));
        assertTrue(h.contains("CUresult CUDAAPI cuTensorMapEncodeTiled(CUtensorMap *tensorMap, CUtensorMapDataType tensorDataType, cuuint32_t tensorRank, void *globalAddress, const cuuint64_t *globalDim, const cuuint64_t *globalStrides, const cuuint32_t *boxDim, const cuuint32_t *elementStrides, CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle, CUtensorMapL2promotion l2Promotion, CUtensorMapFloatOOBfill oobFill);"),
                "the signature TensorMaps binds");
    }

    /** Index of {@code constant} among the members of enum {@code tag} (declared without explicit values but the first). */
    private static int position(String header, String tag, String constant) {
        int start = header.indexOf("typedef enum " + tag);
        String body = header.substring(header.indexOf('{', start) + 1, header.indexOf('}', start));
        int i = 0;
        for (String member : body.split(",")) {
            String name = member.strip().split("[\\s=]")[0];
            if (name.equals(constant)) return i;
            if (!name.isEmpty()) i++;
        }
        throw new AssertionError(constant + " not in " + tag);
    }

    @Test
    void withoutADriverTheEncoderSaysWhy() {
        TensorMaps maps = new TensorMaps();
        org.junit.jupiter.api.Assumptions.assumeFalse(maps.available(), "this machine has a driver: the selftest exercises the encoder");
        assertNotNull(maps.unavailableReason());
        assertFalse(maps.unavailableReason().isBlank());
        assertThrows(CudaUnavailableException.class, () -> maps.encode(new TensorMaps.Bf16Tiled(1L << 20, new long[] {128, 1, 1, 1},
                new long[] {256, 256, 256}, new int[] {64, 1, 1, 1})));
    }

    /** Maps go by value through both launch paths: the per-argument one and the packed slots (ArgSlotsTest has the details). */
    @Test
    void aTensorMapGoesThroughBothLaunchPaths() {
        TensorMaps.TensorMap map = new TensorMaps.TensorMap(new byte[TensorMaps.BYTES]);
        assertNotNull(KernelArgs.pointerTo(map, "k", 0));
        assertThrows(IllegalArgumentException.class, () -> KernelArgs.pointerTo("not an argument", "k", 1));
        assertNotNull(new CudaRuntime.ArgSlots().fill("k", new Object[] {1, map}));
    }
}
