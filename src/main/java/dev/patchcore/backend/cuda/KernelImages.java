package dev.patchcore.backend.cuda;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The fatbins that tools/build-cuda.sh packed into the jar: {@code /cuda/kernels.list} names one
 * {@code /cuda/<family>.fatbin} per line (one per .cu file).
 */
public final class KernelImages {
    static final String LIST = "/cuda/kernels.list";

    private KernelImages() {}

    /** Fatbin name → bytes, in list order; empty when this build has no kernels (nvcc was missing). */
    public static Map<String, byte[]> load() {
        Map<String, byte[]> images = new LinkedHashMap<>();
        try (InputStream list = KernelImages.class.getResourceAsStream(LIST)) {
            if (list == null) return images;
            for (String line : new String(list.readAllBytes(), StandardCharsets.UTF_8).split("\n")) {
                String name = line.strip();
                if (name.isEmpty()) continue;
                try (InputStream in = KernelImages.class.getResourceAsStream("/cuda/" + name)) {
                    if (in == null) throw new UncheckedIOException(new IOException("kernel image /cuda/" + name + " listed but missing"));
                    images.put(name, in.readAllBytes());
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return images;
    }
}
