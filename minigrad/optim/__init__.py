"""minigrad.optim: the optimizers (optimizers.py), gradient clipping (clip.py) and the
learning-rate schedulers (lr_scheduler.py), as torch.optim and torch.nn.utils' clipping."""
from . import lr_scheduler
from .clip import clip_grad_norm_, clip_grad_value_
from .optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "clip_grad_norm_",
           "clip_grad_value_", "lr_scheduler"]
