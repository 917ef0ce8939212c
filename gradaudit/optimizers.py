"""The planned run's optimizers as `--optimizer` names them, torch-free: the command line, the
rules and the trial run read this one list (and `gradaudit rules` stays free of torch)."""

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
MOMENTUM = 0.9  # the heavy-ball coefficient `momentum` stands for (torch.optim.SGD's usual 0.9)
