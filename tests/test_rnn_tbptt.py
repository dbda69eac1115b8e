"""Truncated BPTT with the recurrent state carried across batches: window after window equals
one long forward pass, stream order in the batch does not matter, and it trains in the loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import functional
from jaxdl.models import MODELS
from tests.helpers import tiny_config

ROWS, LENGTH, WINDOW, VOCAB = 3, 12, 4, 7


def _model(stream_rows=ROWS):
    return MODELS.build({"name": "rnn_lm", "cell": "lstm", "hidden": 8, "embed_dim": 4,
                         "num_layers": 2, "stream_rows": stream_rows}, field="model",
                        input_shape=(LENGTH,), num_classes=VOCAB, rngs=nnx.Rngs(0))


def _windows(graphdef, params, state, stream, rows):
    """Run every window of the streams through ``functional.apply``, threading the state."""
    outputs = []
    for _ in range(LENGTH // WINDOW + 1):  # one more than a pass: the index wraps to 0
        (logits, start), state = functional.apply(
            graphdef, params, state, {"stream": stream, "rows": rows, "window": WINDOW})
        outputs.append((logits, start))
    return outputs, state


def test_carried_windows_equal_one_long_forward_in_any_row_order():
    graphdef, params, state = functional.split_model(_model())
    stream = jax.random.randint(jax.random.key(0), (ROWS, LENGTH), 0, VOCAB)
    order = jnp.array([2, 0, 1])  # the iterator shuffles rows; `rows` says which is which

    @jax.jit
    def run(params, state, stream, order):
        full, _ = functional.apply(graphdef, params, state, stream)
        return full, _windows(graphdef, params, state, stream[order], order)

    full, (windows, final_state) = run(params, state, stream, order)
    for k, (logits, start) in enumerate(windows[:-1]):
        assert int(start) == k * WINDOW
        np.testing.assert_allclose(logits, full[order, k * WINDOW:(k + 1) * WINDOW], atol=1e-5)
    # After the last window the index wraps and the next window starts from a zero state.
    logits, start = windows[-1]
    assert int(start) == 0
    np.testing.assert_allclose(logits, full[order, :WINDOW], atol=1e-5)
    assert int(final_state["window_index"]) == 1


def test_wrong_number_of_streams_is_a_clear_error():
    graphdef, params, state = functional.split_model(_model(stream_rows=5))
    stream = jnp.zeros((ROWS, LENGTH), jnp.int32)
    with pytest.raises(ValueError, match="model.stream_rows=5"):
        functional.apply(graphdef, params, state,
                         {"stream": stream, "rows": jnp.arange(ROWS), "window": WINDOW})


@pytest.mark.slow
def test_tbptt_trains_through_the_one_loop(tmp_path):
    from jaxdl.train import train_and_evaluate

    config = tiny_config(**{
        "data": {"name": "tinyshakespeare_streams", "stream_rows": 32},
        "model": {"name": "rnn_lm", "cell": "gru", "hidden": 64, "embed_dim": 16,
                  "stream_rows": 32},
        "loss": {"name": "tbptt_language_model", "window": 32},
        "batch_size": 32, "eval_batch_size": 4, "num_steps": 60, "eval_every": 0,
        "optimizer.learning_rate": 1e-2, "optimizer.clip_norm": 1.0})
    result = train_and_evaluate(config, tmp_path)
    assert int(result.state.model_state["window_index"]) == 60
    # Held-out rows of ~31k characters read whole: well below uniform ln 65 = 4.17 nats.
    assert result.eval_metrics["loss"] < 3.2, result.eval_metrics
