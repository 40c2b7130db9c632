package dev.patchcore.train;

import dev.patchcore.backend.Backend;
import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.backend.cuda.GpuPeaks;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.model.PatchProjections;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** PaLM's model FLOPs (6·N + 12·L·d·S per position) from real models' parameter shapes, and the peak table. */
class ModelFlopsTest {
    private static final ModelConfig TINY = ModelConfig.preset("tiny");

    private static ModelFlops flopsOf(ModelConfig c) {
        try (Backend be = new CpuBackend(1)) {
            return ModelFlops.of(LlamaModel.forInference(be, c));
        }
    }

    private static TrainConfig run(ModelConfig m, int k, int batch, int accum) {
        return new TrainConfig(m, k, 2 / 3.0, 300, batch, accum, 3e-4f, 0.1f, -1, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, 1, 0, 0, 0, 10);
    }

    /**
     * tiny (V 257, d 128, ffn 352, 4 layers, T 64), by hand: per layer q, k, v, o 4·128² = 65 536 and gate, up, down
     * 3·128·352 = 135 168, so 200 704; 4 layers 802 816; the LM head 257·128 = 32 896 (the embedding is a lookup):
     * N = 835 712. Per position at S = 64: 6N = 5 014 272 plus 12·4·128·64 = 393 216, 5 407 488. The default token step
     * (16 sequences of 64) is 1024 positions: 5 537 267 712 FLOPs.
     */
    @Test void tinyPresetByHand() {
        ModelFlops f = flopsOf(TINY);
        assertEquals(835_712, f.matmulParameters());
        assertEquals(32_896, f.headParameters());
        assertEquals(5_407_488.0, f.perPosition(64));
        Stage token = Stage.plan(run(TINY, 4, 16, 1)).getLast();
        assertEquals(5_537_267_712.0, f.perStep(token));
    }

    /**
     * small (V 257, d 256, ffn 688, 6 layers, T 128), by hand: per layer 4·256² = 262 144 plus 3·256·688 = 528 384,
     * 790 528; 6 layers 4 743 168; the head 257·256 = 65 792: N = 4 808 960. Per position at S = 128: 6N = 28 853 760
     * plus 12·6·256·128 = 2 359 296, 31 213 056.
     */
    @Test void smallPresetByHand() {
        ModelFlops f = flopsOf(ModelConfig.preset("small"));
        assertEquals(4_808_960, f.matmulParameters());
        assertEquals(31_213_056.0, f.perPosition(128));
    }

    /**
     * 370m (V 32000, d 1024, ffn 2752, 24 layers, T 2048), by hand: per layer 4·1024² = 4 194 304 plus 3·1024·2752 =
     * 8 454 144, 12 648 448; 24 layers 303 562 752; the head 32000·1024 = 32 768 000: N = 336 330 752 (of the 369.1M
     * parameters: the embedding and the norm gains are not matmuls). Per token at S = 2048: 6N = 2 017 984 512 plus
     * 12·24·1024·2048 = 603 979 776, 2 621 964 288 (2.62 GFLOP, 23 % of it attention's S term).
     */
    @Test void paperPreset370mByHand() {
        ModelFlops f = flopsOf(ModelConfig.preset("370m"));  // forInference: 1.5 GB of fp32 weights, briefly
        assertEquals(336_330_752L, f.matmulParameters());
        assertEquals(2_621_964_288.0, f.perPosition(2048));
        // The paper's micro-batch 4, accumulation 8 (Table 6's baseline row): 32 sequences of 2048 tokens.
        assertEquals(32 * 2048 * 2_621_964_288.0, f.perStep(Stage.plan(run(ModelConfig.preset("370m"), 4, 4, 8)).getLast()));
    }

    /**
     * What the shapes decide: grouped-query attention's K/V projections shrink N (2 key/value heads of 32: each is
     * 64 × 128, 2·4·64·128 = 65 536 less over the layers); a tied embedding is the head and counts once (the same N as
     * two matrices, whose embedding is a lookup); the padding rows of a vocabulary (300 → 320) do not count.
     */
    @Test void shapesDecideN() {
        assertEquals(835_712 - 65_536, flopsOf(TINY.withKvHeads(2)).matmulParameters());
        assertEquals(835_712, flopsOf(TINY.withTiedEmbeddings(true)).matmulParameters());
        assertEquals(802_816 + 300 * 128, flopsOf(TINY.withVocab(300)).matmulParameters());
    }

    /**
     * The patch stage runs T patches for K·T tokens: at the same tokens per step its FLOPs are 1/K of the token
     * stage's (exactly, as both have S = T positions), at both presets and K = 2, 4, 8; the §3.2 short context (S = T/K)
     * costs less still, its attention term shrinking with S.
     */
    @Test void patchStageCostsAboutOneKthOfTheTokenStage() {
        ModelConfig m370 = ModelConfig.preset("370m");
        for (ModelConfig m : List.of(TINY, m370)) {
            // 370m's N as pinned above (not allocated again here)
            ModelFlops f = m == TINY ? flopsOf(TINY) : new ModelFlops(336_330_752L, 32_768_000L, m370.layers(), m370.dim());
            for (int k : new int[] {2, 4, 8}) {
                List<Stage> plan = Stage.plan(run(m, k, 4, 8));
                assertEquals(2, plan.size());
                double patch = f.perStep(plan.getFirst()), token = f.perStep(plan.getLast());
                assertEquals(1.0 / k, patch / token, 1e-12, m.name() + " K=" + k);
            }
            TrainConfig shortContext = new TrainConfig(m, 4, 2 / 3.0, 300, 4, 8, 3e-4f, 0.1f, -1, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, 1, 0, 0, 0, 10,
                    new PatchOptions(dev.patchcore.data.PatchMode.CONSECUTIVE, false, false, true));
            List<Stage> plan = Stage.plan(shortContext);
            double ratio = f.perStep(plan.getFirst()) / f.perStep(plan.getLast());
            assertTrue(ratio < 0.25 && ratio > 0.15, m.name() + " short patch context: " + ratio);
        }
    }

    /**
     * Paper §3.7's projections are matmuls: the input one adds its d × K·d matrix; the output one its K·d × d matrix and
     * K − 1 more runs of the LM head per patch (tiny, K = 4: 65 536 + 3 · 32 896).
     */
    @Test void patchProjectionsCount() {
        try (Backend be = new CpuBackend(1)) {
            ModelFlops f = ModelFlops.of(LlamaModel.forInference(be, TINY));
            assertSame(f, f.withProjections(null));
            PatchProjections in = new PatchProjections(be, TINY, 4, true, false), out = new PatchProjections(be, TINY, 4, false, true);
            assertEquals(835_712 + 65_536, f.withProjections(in).matmulParameters());
            assertEquals(835_712 + 65_536 + 3 * 32_896, f.withProjections(out).matmulParameters());
        }
    }

    @Test void rateAndMfuText() {
        assertEquals("41.2 GFLOP/s", ModelFlops.rateText(41.2e9, Double.NaN));
        assertEquals("0.5 GFLOP/s (50.0% MFU)", ModelFlops.rateText(0.5e9, 0.001));
        assertEquals("412.3 TFLOP/s (41.7% MFU)", ModelFlops.rateText(412.3e12, 989.4));
        assertEquals("1.0 TFLOP/s", ModelFlops.rateText(1e12, Double.NaN));
        assertEquals(0.5, ModelFlops.mfu(494.7e12, 989.4), 1e-12);
        assertTrue(Double.isNaN(ModelFlops.mfu(1e12, Double.NaN)));
    }

    /** NVIDIA's data-sheet peaks (dense bf16) by the names cuDeviceGetName gives; unknown devices have none. */
    @Test void gpuPeaksByDeviceName() {
        assertEquals(989.4, GpuPeaks.bf16DenseTflops("NVIDIA H100 80GB HBM3"));  // SXM5, the name the H100 runs here saw
        assertEquals(756, GpuPeaks.bf16DenseTflops("NVIDIA H100 PCIe"));
        assertEquals(989.4, GpuPeaks.bf16DenseTflops("NVIDIA H200"));
        assertEquals(312, GpuPeaks.bf16DenseTflops("NVIDIA A100-SXM4-80GB"));
        assertEquals(312, GpuPeaks.bf16DenseTflops("NVIDIA A100 80GB PCIe"));
        assertEquals(312, GpuPeaks.bf16DenseTflops("NVIDIA A100-PCIE-40GB"));
        assertEquals(989.4, GpuPeaks.bf16DenseTflops("NVIDIA GH200 480GB"));  // Grace Hopper: an H100-class GPU
        assertEquals(989.4, GpuPeaks.bf16DenseTflops("NVIDIA GH200 144G HBM3e"));
        // A model number inside another is not it: an RTX A1000 (a small Ampere card) is no A100; a MIG slice (the name
        // the runtime gives it) has a fraction of the GPU's SMs, so not its peak
        for (String other : List.of("NVIDIA H100 NVL", "NVIDIA H200 NVL", "NVIDIA GeForce RTX 4090", "Tesla V100-SXM2-16GB", "",
                "NVIDIA A100-SXM4-40GB MIG 1g.5gb", "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
                "NVIDIA RTX A1000", "NVIDIA RTX A1000 6GB Laptop GPU", "NVIDIA H20", "NVIDIA A10"))
            assertTrue(Double.isNaN(GpuPeaks.bf16DenseTflops(other)), other);
        try (Backend cpu = new CpuBackend(1)) {
            assertTrue(Double.isNaN(cpu.peakTflops()), "the CPU backend has no peak");
        }
    }
}
