"""The rules core: policy, per-person state, the rules, the engine and what is derived from it. No I/O."""
