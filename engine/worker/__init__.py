"""The worker wing: the consume loop, the executor, the settler that carries out an
outcome, redelivery checks, state tracking, control and the process runner."""
