package dev.patchcore.backend.cuda;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The kernel-variant registry without a GPU: every family in {@link CudaBackend#KERNEL_VARIANTS} lists its default
 * first as 1 and is wired everywhere a variant must be (getter and setter in CudaBackend, the selftest, the docs, the
 * GPU check's all-variants run), so adding a family cannot silently skip its checks.
 */
class KernelVariantsTest {
    private static String read(String path) throws IOException { return Files.readString(Path.of(path)); }

    private static int count(String text, String needle) {
        Matcher m = Pattern.compile(Pattern.quote(needle)).matcher(text);
        int n = 0;
        while (m.find()) n++;
        return n;
    }

    @Test
    void everyFamilyIsWiredThroughBackendSelftestDocsAndTheGpuCheck() throws IOException {
        String backend = read("src/main/java/dev/patchcore/backend/cuda/CudaBackend.java");
        String selftest = read("src/main/java/dev/patchcore/selftest/ParityChecks.java");
        String docs = read("docs/kernels.md");
        String gpuCheck = read("tools/device/gpu-check.sh");
        String readme = read("README.md");
        assertTrue(CudaBackend.KERNEL_VARIANTS.size() >= 1);
        for (var e : CudaBackend.KERNEL_VARIANTS.entrySet()) {
            String f = e.getKey();
            List<Integer> variants = e.getValue();
            assertEquals(1, variants.getFirst(), f + ": variant 1 is the measured default");
            assertTrue(variants.size() >= 2, f + " has nothing to evaluate");
            assertEquals(2, count(backend, "case \"" + f + "\" ->"), f + ": a getter and a setter case in CudaBackend");
            assertEquals(1, count(selftest, "case \"" + f + "\" ->"), f + ": selftest rows");
            assertTrue(docs.contains("| `" + f + "` |"), f + ": a row in docs/kernels.md's variant table");
            assertTrue(gpuCheck.contains("-Dpatchcore." + f + ".variant=2"), f + ": on in gpu-check's train-variants run");
            assertTrue(readme.contains("`" + f + "`"), f + ": named in the README's settings");
        }
    }

    @Test
    void variantsCanBeLeftOutOfSelftestAndBench() {
        String before = System.getProperty("patchcore.variants.skip");
        try {
            System.setProperty("patchcore.variants.skip", "flashfwd:5, rmsnormbwd:2");
            assertTrue(CudaBackend.variantSkipped("flashfwd", 5));
            assertTrue(CudaBackend.variantSkipped("rmsnormbwd", 2));
            assertTrue(!CudaBackend.variantSkipped("flashfwd", 4), "only the named variants");
            assertTrue(!CudaBackend.variantSkipped("flashbwd", 2));
            System.clearProperty("patchcore.variants.skip");
            assertTrue(!CudaBackend.variantSkipped("flashfwd", 5), "nothing skipped by default");
        } finally {
            if (before == null) System.clearProperty("patchcore.variants.skip");
            else System.setProperty("patchcore.variants.skip", before);
        }
    }
}
