"""Where the time goes: per-stage timers, a loader's stats, the bottleneck doctor, progress bars."""
