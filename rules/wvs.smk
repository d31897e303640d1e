# Rules of stage group 'wvs'.


def wvs_targets():
    """Final outputs of this stage group that rule all requests."""
    return []
