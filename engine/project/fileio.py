from layerloom.core.fileio import *  # noqa: F401,F403 kept for app/ until it moves; remove after
