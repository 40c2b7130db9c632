package dev.patchcore.backend.cuda;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Where to look for cuBLASLt. Order: an explicit path (the {@code open()} argument, else $PATCHCORE_CUBLASLT), then the
 * sonames through the dynamic linker (LD_LIBRARY_PATH, ld.so.cache), then the CUDA toolkit folders, then the
 * {@code nvidia/cublas/lib} folder of Python site-packages (pip's nvidia-cublas wheels). CUDA 13 before 12.
 */
public final class CublasLtLibrary {
    static final String[] SONAMES = {"libcublasLt.so.13", "libcublasLt.so.12"};

    private CublasLtLibrary() {}

    /** One place to try: an absolute file, or a bare soname for dlopen's own search. */
    public record Candidate(String pathOrSoname, boolean explicit) {}

    public static List<Candidate> candidates(String override, String env, List<Path> toolkitDirs, List<Path> sitePackages) {
        List<Candidate> out = new ArrayList<>();
        String explicit = override != null && !override.isBlank() ? override : env != null && !env.isBlank() ? env : null;
        if (explicit != null) {
            out.add(new Candidate(explicit, true));
            return out; // the user named a library: do not silently fall back to another one
        }
        for (String so : SONAMES) out.add(new Candidate(so, false));
        for (String so : SONAMES) {
            for (Path dir : toolkitDirs) out.add(new Candidate(dir.resolve(so).toString(), false));
            for (Path sp : sitePackages) out.add(new Candidate(sp.resolve("nvidia/cublas/lib").resolve(so).toString(), false));
        }
        return out;
    }

    /** CUDA toolkit library folders present on this machine: /usr/local/cuda*&#47;{lib64,targets/x86_64-linux/lib}. */
    public static List<Path> toolkitDirs() {
        List<Path> dirs = new ArrayList<>();
        List<Path> roots = new ArrayList<>();
        roots.add(Path.of("/usr/local/cuda"));
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(Path.of("/usr/local"), "cuda-*")) {
            for (Path p : ds) roots.add(p);
        } catch (IOException | RuntimeException ignored) {
            // no /usr/local or unreadable: nothing to add
        }
        for (Path r : roots) {
            for (String sub : new String[] {"lib64", "targets/x86_64-linux/lib", "targets/sbsa-linux/lib"}) {
                Path d = r.resolve(sub);
                if (Files.isDirectory(d) && !dirs.contains(d)) dirs.add(d);
            }
        }
        return dirs;
    }

    /** Python site-packages folders that exist: /usr/lib/python3*&#47;{site,dist}-packages, /usr/local/lib/…, ~/.local/lib/…, $VIRTUAL_ENV. */
    public static List<Path> sitePackages() {
        List<Path> bases = new ArrayList<>(List.of(Path.of("/usr/lib"), Path.of("/usr/local/lib"), Path.of("/opt/conda/lib")));
        String home = System.getProperty("user.home");
        if (home != null) bases.add(Path.of(home, ".local/lib"));
        String venv = System.getenv("VIRTUAL_ENV");
        if (venv != null) bases.add(Path.of(venv, "lib"));
        String conda = System.getenv("CONDA_PREFIX");
        if (conda != null) bases.add(Path.of(conda, "lib"));
        List<Path> out = new ArrayList<>();
        for (Path base : bases) {
            try (DirectoryStream<Path> ds = Files.newDirectoryStream(base, "python3*")) {
                for (Path py : ds) {
                    for (String kind : new String[] {"site-packages", "dist-packages"}) {
                        Path sp = py.resolve(kind);
                        if (Files.isDirectory(sp.resolve("nvidia"))) out.add(sp);
                    }
                }
            } catch (IOException | RuntimeException ignored) {
                // folder missing or unreadable: skip
            }
        }
        return out;
    }
}
