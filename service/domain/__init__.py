"""The pure domain: envelope rules, policy, decay arithmetic, alert state machine. No I/O."""
