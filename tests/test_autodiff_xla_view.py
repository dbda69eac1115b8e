"""What XLA does to a graph: op counts before/after compilation, HLO parsing, remat memory."""

import jax
import jax.numpy as jnp
import pytest

from jaxdl.autodiff import xla_view
from jaxdl.autodiff.xla_view import hlo_op_counts, hlo_text_counts, parse_hlo_text

HANDWRITTEN_HLO = """\
HloModule handwritten, entry_computation_layout={(f32[4]{0})->(f32[4]{0}, s32[])}

%add_reducer (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %sum = f32[] add(%a, %b)
}

%fused_computation (p0: f32[4]) -> f32[4] {
  %p0 = f32[4]{0} parameter(0)
  %c = f32[] constant(2)
  %bc = f32[4]{0} broadcast(%c), dimensions={}
  ROOT %m = f32[4]{0} multiply(%p0, %bc), metadata={op_name="jit(f)/mul"}
}

%body (state: (s32[], f32[4])) -> (s32[], f32[4]) {
  %state = (s32[], f32[4]{0}) parameter(0)
  %i = s32[] get-tuple-element(%state), index=0
  %v = f32[4]{0} get-tuple-element(%state), index=1
  %one = s32[] constant(1)
  %next = s32[] add(%i, %one)
  %f = f32[4]{0} fusion(%v), kind=kLoop, calls=%fused_computation
  ROOT %t = (s32[], f32[4]{0}) tuple(%next, %f)
}

%cond (state.1: (s32[], f32[4])) -> pred[] {
  %state.1 = (s32[], f32[4]{0}) parameter(0)
  %i.1 = s32[] get-tuple-element(%state.1), index=0
  %three = s32[] constant(3)
  ROOT %lt = pred[] compare(%i.1, %three), direction=LT
}

ENTRY %main (x: f32[4]) -> (f32[4], s32[]) {
  %x = f32[4]{0} parameter(0)
  %zero = s32[] constant(0)
  %init = (s32[], f32[4]{0}) tuple(%zero, %x)
  %loop = (s32[], f32[4]{0}) while(%init), condition=%cond, body=%body
  %out = f32[4]{0} get-tuple-element(%loop), index=1
  %e = f32[4]{0} exponential(%out)
  %zf = f32[] constant(0)
  %r = f32[] reduce(%e, %zf), dimensions={0}, to_apply=%add_reducer
  %g = f32[4]{0} fusion(%e), kind=kLoop, calls=%fused_computation
  ROOT %res = (f32[4]{0}, s32[]) tuple(%g, %zero)
}
"""


def test_parse_handwritten_hlo():
    computations = parse_hlo_text(HANDWRITTEN_HLO)
    assert set(computations) == {"add_reducer", "fused_computation", "body", "cond", "main"}
    assert [c.name for c in computations.values() if c.is_entry] == ["main"]
    assert computations["main"].control_calls == {"cond", "body"}
    assert computations["main"].fusion_calls == {"fused_computation"}
    assert computations["body"].opcodes == [
        "parameter", "get-tuple-element", "get-tuple-element", "constant", "add", "fusion",
        "tuple"]
    counts, steps, fusions = hlo_text_counts(HANDWRITTEN_HLO)
    assert counts["add"] == 2 and counts["multiply"] == 1 and counts["fusion"] == 2
    assert counts["parameter"] == 6 and counts["tuple"] == 3
    # Steps: entry (while, exponential, reduce, fusion) + body (add, fusion) + cond (compare);
    # the fused multiply/broadcast and the reducer's add run inside other ops.
    assert steps == 7
    assert fusions == 1
    with pytest.raises(ValueError, match="ENTRY"):
        hlo_text_counts(HANDWRITTEN_HLO.replace("ENTRY ", ""))


def test_constant_folding_removes_arithmetic():
    example = xla_view.constant_folding_example()
    before = example.before.get("add", 0) + example.before.get("multiply", 0)
    after = example.after.get("add", 0) + example.after.get("multiply", 0)
    assert before == 5  # x + 0, * 1, ones * 2, + 1, and the final sum
    assert after < before
    assert example.after.get("multiply", 0) == 0  # x * 1 and ones * 2 are both gone
    assert f"{before} -> {after}" in example.explanation


def test_elementwise_chain_fuses():
    example = xla_view.fusion_example()
    assert example.fusions >= 1
    assert example.after_total < example.before_total
    assert example.before.get("fusion", 0) == 0
    assert example.after.get("tanh", 0) == 1  # the op survives, inside the fused computation


def test_dead_code_elimination_drops_the_unused_dot():
    example = xla_view.dead_code_example()
    assert example.before.get("dot", 0) == 1
    assert example.after.get("dot", 0) == 0
    assert example.before.get("tanh", 0) == 1 and example.after.get("tanh", 0) == 0


def test_jax_already_prunes_dead_code_without_keep_unused():
    def f(x, w):
        unused = x @ w  # noqa: F841
        return jnp.sin(x)

    spec = jax.ShapeDtypeStruct((8, 8), jnp.float32)
    assert hlo_op_counts(f, spec, spec)["before"].get("dot", 0) == 0
    assert hlo_op_counts(f, spec, spec, keep_unused=True)["before"].get("dot", 0) == 1


def test_full_remat_lowers_temp_memory_and_adds_one_forward():
    depth, width, batch = 16, 256, 128
    none, full = xla_view.remat_memory_report(depth, width, batch, policies=("none", "full"))
    assert (none.policy, full.policy) == ("none", "full")
    assert none.temp_ratio == 1.0 and none.flops_ratio == 1.0
    assert full.temp_bytes < none.temp_bytes
    assert full.temp_ratio == pytest.approx(full.temp_bytes / none.temp_bytes)
    assert full.flops >= none.flops
    # The jaxpr FLOP model sees the recomputation: one more forward pass of every layer
    # (matmul, bias add, tanh), exactly.
    extra_forward = depth * (2 * batch * width * width + 2 * batch * width)
    assert full.model_flops - none.model_flops == extra_forward
    assert full.argument_bytes == none.argument_bytes == 4 * (depth * (width + 1) * width
                                                              + 2 * batch * width)


def test_remat_report_rejects_bad_arguments():
    with pytest.raises(ValueError, match="policies"):
        xla_view.remat_memory_report(2, 8, 4, policies=("none", "save_only_these_names"))
    with pytest.raises(ValueError, match="depth"):
        xla_view.remat_memory_report(0, 8, 4)
