package dev.patchcore.cli;

import dev.patchcore.backend.Backend;
import dev.patchcore.bench.SpeedTable;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.train.ModelFlops;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.List;

@Command(name = "speed", mixinStandardHelpOptions = true,
        description = "Reproduce the paper's Table 6: tokens/s of full training steps for the token-level baseline and patch-level K=4 settings.")
public final class BenchSpeedCommand implements java.util.concurrent.Callable<Integer> {
    @Option(names = "--preset", defaultValue = "tiny", description = "model preset (default: ${DEFAULT-VALUE})") String preset;
    @Option(names = "--context", description = "token-level block T (default: the preset's)") Integer context;
    @Option(names = "--vocab", description = "vocabulary size (default: the preset's)") Integer vocab;
    @Option(names = "--kv-heads", description = "key/value heads, as train --kv-heads (default: as many as query heads)") Integer kvHeads;
    @Option(names = "--tie-embeddings", description = "one matrix as the embedding and the LM head, as train --tie-embeddings") boolean tie;
    @Option(names = "--batch", defaultValue = "4", description = "micro-batch in sequences (default: ${DEFAULT-VALUE}, the paper's)") int batch;
    @Option(names = "--accum", defaultValue = "8", description = "the baseline's accumulation steps (default: ${DEFAULT-VALUE}, the paper's)") int accum;
    @Option(names = {"-K", "--patch-size"}, defaultValue = "4", description = "patch size K of the patch-level rows, 2 or more (default: ${DEFAULT-VALUE})") int k;
    @Option(names = "--warmup", defaultValue = "1", description = "untimed steps per setting, all settings' before the first timed "
            + "step (default: ${DEFAULT-VALUE})") int warmup;
    @Option(names = "--steps", defaultValue = "3", description = "timed steps per setting, the median reported (default: ${DEFAULT-VALUE})") int steps;
    @Option(names = "--json", description = "also write the table as JSON to this file") Path json;
    @Option(names = "--breakdown", description = "after each setting's timed steps, one more step timed op by op: where the time goes "
            + "(CUDA: each op's stream time, and the time the GPU waited between ops; with --devices, on the first device alone)") boolean breakdown;
    @Option(names = "--recompute", description = "activation recompute per layer, as train --recompute: its cost in speed, and "
            + "(on CUDA) the scratch memory it saves") boolean recompute;
    @Option(names = "--devices", split = ",", paramLabel = "ID", description = "data-parallel steps over these GPUs, as train "
            + "--devices (the paper's Table 6 used 8); --accum counts micro-batches over all of them (default: the one backend --backend picks; 0 alone is GPU 0, never the CPU)")
    List<Integer> devices;
    @Option(names = "--peak-tflops", paramLabel = "X", description = "each device's peak in TFLOP/s for the MFU column, as train "
            + "--peak-tflops (default: the GPU's dense bf16 peak where known; none on the CPU)") Double peakTflops;
    @Mixin BackendOptions backendOptions;

    @Override public Integer call() {
        ModelConfig m = ModelConfig.preset(preset);
        if (context != null) m = m.withContext(context);
        if (vocab != null) m = m.withVocab(vocab);
        if (kvHeads != null) m = TrainCommand.withKvHeads(m, kvHeads);
        m = m.withTiedEmbeddings(tie);
        SpeedTable.checkSettings(batch, accum, k, warmup, steps, devices == null ? 1 : devices.size(), m.contextLength());
        ModelFlops.checkPeakOption(peakTflops);
        BenchCommand.checkJsonTarget(json, "speed.json");
        List<Backend> backends = backendOptions.openDevices(devices);
        if (warmup == 0)  // after the backend opened: a backend that cannot is one error line alone
            System.err.println("note: --warmup 0: the first timed steps carry the JIT's compilation and the GEMM tuning, "
                    + "so the table's speed-ups mean little");
        try {
            Backend be = backends.getFirst();
            List<Backend> others = backends.subList(1, backends.size());
            BackendOptions.printReplicas(backends, devices);
            System.out.printf("speed table: preset %s, T=%d, micro-batch %d, accumulation %d, K=%d, backend %s%s%s%s%n", m.name(), m.contextLength(),
                    batch, accum, k, be.name(), m.groups() > 1 ? ", " + m.kvHeads() + " key/value heads" : "",
                    tie ? ", tied embeddings" : "", recompute ? ", activation recompute" : "");
            SpeedTable table = new SpeedTable(be, m, batch, accum, k, warmup, steps).withReplicas(others).withBreakdown(breakdown)
                    .withRecompute(recompute);
            if (peakTflops != null) table.withPeakTflops(peakTflops);
            List<SpeedTable.Row> rows = table.run(System.out);
            System.out.println();
            System.out.print(SpeedTable.markdown(rows));
            String j = SpeedTable.json(rows, be.name(), m, backends.size());
            if (json != null) {
                BenchCommand.writeJson(json, j);
                System.out.println("wrote " + json);
            }
        } finally {
            BackendOptions.closeAll(backends);
        }
        return 0;
    }
}
