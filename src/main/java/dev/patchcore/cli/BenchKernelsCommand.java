package dev.patchcore.cli;

import dev.patchcore.backend.Backend;
import dev.patchcore.backend.cuda.CudaBackend;
import dev.patchcore.bench.KernelBench;
import dev.patchcore.config.ModelConfig;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/** Per-op microbenchmarks at the 370M shapes on CUDA (a small shape on the CPU backend). */
@Command(name = "kernels", mixinStandardHelpOptions = true,
        description = "Time every op (median of many runs) with bytes/FLOPs and %% of the copy-bandwidth and GEMM ceilings.")
public final class BenchKernelsCommand implements Callable<Integer> {
    @Mixin BackendOptions backendOptions;

    @Option(names = "--json", description = "also write the rows as JSON to this file")
    Path json;

    @Option(names = "--runs", defaultValue = "20", description = "minimum timed runs per op after 3 warm-ups (default: ${DEFAULT-VALUE})")
    int runs;

    @Option(names = "--shape", description = "370m, 780m, 1.3b or 2.7b (that paper preset's width, FFN and heads at T = 2048, "
            + "micro-batch 4) or small (a CPU-sized shape: d = 256, ffn 688, T = 256, 4 heads of 64, V = 4096; not the small "
            + "preset) (default: 370m on CUDA, small on the CPU)")
    String shape;

    @Option(names = "--only", paramLabel = "REGEX", description = "time only the ops whose name (with its variant tag, as the "
            + "table prints it) contains a match of this case-insensitive regular expression, e.g. 'rmsNorm backward' or "
            + "'attention|swiglu'; the two ceilings are always timed (default: every op)")
    String only;

    @Override
    public Integer call() {
        if (runs < 1) throw new IllegalArgumentException("--runs must be at least 1");
        BenchCommand.checkJsonTarget(json, "kernels.json");
        java.util.regex.Pattern onlyOps = only == null ? null : KernelBench.onlyPattern(only);
        if (shape != null && !List.of("370m", "780m", "1.3b", "2.7b", "small").contains(shape))  // before a backend opens
            throw new IllegalArgumentException("unknown --shape '" + shape + "' (choose 370m, 780m, 1.3b, 2.7b or small)");
        try (Backend be = backendOptions.open()) {
            KernelBench.Shapes shapes = switch (shape == null ? (be instanceof CudaBackend ? "370m" : "small") : shape) {
                case "370m", "780m", "1.3b", "2.7b" -> KernelBench.Shapes.paper(ModelConfig.preset(shape));
                case "small" -> KernelBench.Shapes.small();
                default -> throw new IllegalArgumentException("unknown --shape '" + shape + "' (choose 370m, 780m, 1.3b, 2.7b or small)");
            };
            String device = be instanceof CudaBackend c ? c.describe() : be.name();
            System.out.println("bench kernels: " + device + ", shapes " + shapes.name());
            KernelBench bench = new KernelBench(be, shapes, runs).withProgress(System.err);  // stdout: the tables alone
            if (onlyOps != null) bench.withOnly(onlyOps);
            List<KernelBench.Row> rows = bench.run();
            if (onlyOps != null && rows.stream().noneMatch(r -> onlyOps.matcher(r.op()).find()))  // --only ceiling: those alone
                throw new IllegalArgumentException("--only '" + only + "' matches no op " + (be instanceof CudaBackend ? "" : "on the "
                        + be.name() + " backend ") + "(names as the table prints them, e.g. 'rmsNorm backward' or 'attention|swiglu')");
            System.out.print(KernelBench.markdown(rows));
            System.out.printf("ceilings: copy %.1f GB/s, gemm %.2f TFLOP/s%n", bench.copyCeilingGbPerS(), bench.gemmCeilingTflopPerS());
            if (!(be instanceof CudaBackend))
                System.out.println("note: the copy ceiling streams 64 MiB from memory; on a CPU the smaller ops' data stays in cache, "
                        + "so they can run above 100 % of it");
            if (!bench.memory().isEmpty()) System.out.print(KernelBench.memoryMarkdown(bench.memory()));
            String variants = KernelBench.variantsMarkdown(rows);
            if (!variants.isEmpty()) System.out.print("\nkernel variants under evaluation vs the defaults:\n" + variants);
            if (json != null) {
                Map<String, Object> doc = new LinkedHashMap<>();
                doc.put("device", device);
                doc.put("shapes", shapes.name());
                doc.put("copyCeilingGbPerS", bench.copyCeilingGbPerS());
                doc.put("gemmCeilingTflopPerS", bench.gemmCeilingTflopPerS());
                doc.put("rows", rows);
                doc.put("attentionMemory", bench.memory());
                BenchCommand.writeJson(json, dev.patchcore.bench.BenchJson.GSON.toJson(doc));
                System.out.println("wrote " + json);
            }
            return 0;
        }
    }
}
