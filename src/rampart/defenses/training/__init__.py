"""The parts of adversarial training: methods, eps curriculum, checkpoints, history, config,
report and the distributed plumbing. ``rampart.defenses.adversarial_training`` puts them
together in :class:`~rampart.defenses.adversarial_training.AdversarialTrainer`."""
