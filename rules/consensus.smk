# Rules of stage group 'consensus'.


def consensus_targets():
    """Final outputs of this stage group that rule all requests."""
    return []
