package dev.patchcore.train;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** When the console starts showing an ETA: after 20 measured steps, or a quarter of a shorter stage, 2 at least. */
class EtaTest {
    @Test void theEtaWaitsForTheJitToSettle() {
        assertEquals(20, Trainer.etaSteps(667));
        assertEquals(20, Trainer.etaSteps(80));
        assertEquals(10, Trainer.etaSteps(40));
        assertEquals(2, Trainer.etaSteps(4));
        assertEquals(2, Trainer.etaSteps(1));
    }
}
