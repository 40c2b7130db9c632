package dev.patchcore.backend.cuda;

import java.util.Locale;
import java.util.regex.Pattern;

/**
 * Dense bf16 tensor-core peaks by device name (the name {@code cuDeviceGetName} gives), for the MFU that {@code train},
 * {@code finetune} and {@code bench speed} print. From NVIDIA's data sheets, which give the peaks with 2:4 sparsity: the
 * dense peak is half. H100 SXM5 ("NVIDIA H100 80GB HBM3") 989.4 TFLOP/s, H100 PCIe 756, H200 (SXM) 989.4, GH200 (its
 * Hopper GPU, "NVIDIA GH200 480GB") 989.4, A100 (SXM4 and PCIe, 40 and 80 GB) 312. Other devices (H100 NVL, H200 NVL,
 * whose peaks differ from the SXM parts', a MIG slice of any GPU, and everything else) are unknown: NaN, and {@code --peak-tflops} gives theirs.
 */
public final class GpuPeaks {
    private GpuPeaks() {}

    /** The device's dense bf16 peak in TFLOP/s, or NaN where the table does not know it. */
    public static double bf16DenseTflops(String deviceName) {
        String n = deviceName.toUpperCase(Locale.ROOT);
        // A MIG slice ("NVIDIA A100-SXM4-40GB MIG 1g.5gb") has a fraction of the GPU's SMs: the whole GPU's peak would
        // understate its MFU up to 7 times
        if (has(n, "NVL") || has(n, "MIG")) return Double.NaN;
        if (has(n, "H100")) return has(n, "PCIE") ? 756 : 989.4;
        if (has(n, "H200") || has(n, "GH200")) return 989.4;
        if (has(n, "A100")) return 312;
        return Double.NaN;
    }

    /**
     * Whether {@code word} stands in {@code name} as a word of its own (between non-alphanumerics, as in
     * "A100-SXM4-80GB"), not inside another model number: an "RTX A1000" is no A100.
     */
    private static boolean has(String name, String word) {
        return Pattern.compile("(?<![A-Z0-9])" + word + "(?![A-Z0-9])").matcher(name).find();
    }
}
