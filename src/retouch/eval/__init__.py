"""Metrics (PIE-Bench, Emu Edit, MagicBrush protocols) and the benchmark runner."""
