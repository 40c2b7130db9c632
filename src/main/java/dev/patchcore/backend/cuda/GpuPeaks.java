package dev.patchcore.backend.cuda;

import java.util.Locale;

/**
 * Dense bf16 tensor-core peaks by device name (the name {@code cuDeviceGetName} gives), for the MFU that {@code train}
 * and {@code bench speed} print. From NVIDIA's data sheets, which give the peaks with 2:4 sparsity: the dense peak is
 * half. H100 SXM5 ("NVIDIA H100 80GB HBM3") 989.4 TFLOP/s, H100 PCIe 756, H200 (SXM) 989.4, A100 (SXM4 and PCIe, 40 and
 * 80 GB) 312. Other devices (H100 NVL, H200 NVL, whose peaks differ from the SXM parts', and everything else) are
 * unknown: NaN, and {@code --peak-tflops} gives theirs.
 */
public final class GpuPeaks {
    private GpuPeaks() {}

    /** The device's dense bf16 peak in TFLOP/s, or NaN where the table does not know it. */
    public static double bf16DenseTflops(String deviceName) {
        String n = deviceName.toUpperCase(Locale.ROOT);
        if (n.contains("NVL")) return Double.NaN;
        if (n.contains("H100")) return n.contains("PCIE") ? 756 : 989.4;
        if (n.contains("H200")) return 989.4;
        if (n.contains("A100")) return 312;
        return Double.NaN;
    }
}
