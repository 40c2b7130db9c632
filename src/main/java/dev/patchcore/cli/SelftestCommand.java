package dev.patchcore.cli;

import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.backend.cuda.CudaBackend;
import dev.patchcore.backend.cuda.CudaUnavailableException;
import dev.patchcore.selftest.CheckResult;
import dev.patchcore.selftest.ParityChecks;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.List;
import java.util.concurrent.Callable;

/** Runs every CUDA op against the CPU backend on random inputs with NaN-poisoned outputs; one row per comparison. */
@Command(name = "selftest", mixinStandardHelpOptions = true,
        description = "Check every CUDA kernel against the CPU reference (relative error, fp32 < 1e-5, bf16 < 1e-2).")
public final class SelftestCommand implements Callable<Integer> {
    @Option(names = "--cublaslt", description = "path of libcublasLt.so (default: $PATCHCORE_CUBLASLT, then the usual places)")
    String cublasLt;

    @Option(names = "--seed", defaultValue = "1234", description = "random seed of the inputs (default: ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--quick", description = "skip the large shapes (4096x1024x1024 GEMM, attention at T = 1000)")
    boolean quick;

    @Option(names = "--only", paramLabel = "TEXT",
            description = "run only the checks whose name contains TEXT (e.g. \"[flashfwd v5]\" or \"rmsNorm\")")
    String only;

    @Override
    public Integer call() {
        CudaBackend cuda;
        try {
            cuda = CudaBackend.open(cublasLt, true);
        } catch (CudaUnavailableException e) {
            // Not a failed check: nothing could be checked. One line and exit code 2, as for any input this machine cannot take.
            System.err.println("error: selftest checks the CUDA kernels and needs a GPU; the CUDA backend is unavailable: " + e.getMessage());
            return 2;
        }
        try (cuda; CpuBackend cpu = new CpuBackend()) {
            ParityChecks checks = new ParityChecks(cuda, cpu, seed, !quick);
            List<ParityChecks.Check> selected = selected(checks.checks(), only);
            System.out.println("device: " + cuda.describe());
            System.out.println("reference: cpu (" + cpu.threads() + " threads)");
            System.out.println(CheckResult.header());
            long failures = 0, rows = 0;
            for (ParityChecks.Check c : selected) {
                List<CheckResult> results = checks.run(c);
                for (CheckResult r : results) {
                    System.out.println(r.row());
                    rows++;
                }
                failures += CheckResult.failures(results);
            }
            System.out.printf("selftest: %d checks, %d failed%n", rows, failures);
            return failures == 0 ? 0 : 1;
        }
    }

    /** The checks whose name contains {@code only} (null: all); none is bad input, said before any check runs. */
    static List<ParityChecks.Check> selected(List<ParityChecks.Check> all, String only) {
        if (only == null) return all;
        List<ParityChecks.Check> selected = all.stream().filter(c -> c.name().contains(only)).toList();
        if (selected.isEmpty())
            throw new IllegalArgumentException("--only '" + only + "' matches no check (a check runs when its name contains the text, "
                    + "e.g. \"[flashfwd v5]\" or \"rmsNorm\")");
        return selected;
    }
}
