"""The learning engine: per (agent, task type) outcome statistics, peer pooling,
persistence and the modes that decide whether routing uses them."""
