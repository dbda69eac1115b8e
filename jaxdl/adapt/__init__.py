"""Adaptation: LoRA, knowledge distillation, DPO."""
