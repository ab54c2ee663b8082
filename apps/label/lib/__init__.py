"""The tfkt_quality MONAI Label app's tasks: they run the tfkt_bundle inference workflow's parts."""
