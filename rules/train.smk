# Rules of stage group 'train'.


def train_targets():
    """Final outputs of this stage group that rule all requests."""
    return []
