"""Performance measurement: the plain PyTorch GAN loop gandist is compared with, gandist's own
step under each engine, FLOP counting and device peaks (MFU), and the ``gandist bench`` run."""
