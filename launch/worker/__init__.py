"""What runs inside one worker: set-up, the timed loop, communication, warm-up, checkpoints."""
