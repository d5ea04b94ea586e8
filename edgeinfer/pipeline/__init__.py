"""The data plane: batching, the prepare/infer/finish stages and outcome building."""
