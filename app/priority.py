"""Keep the window ahead of the compute threads. On 2 cores, PoCL's worker threads and the
training thread otherwise take the CPU from the GUI thread, and repaints stall for 100 ms and
more (bench/training_ui.py). Raising the nice value of every thread except the GUI thread
(Linux lets a process do that to its own threads without privileges) halves the longest
stalls and leaves training speed unchanged when the window is idle. Other systems: no-op."""
import os
import threading


def lower_other_threads(nice=10, gui_thread_id=None):
    """Give every thread of this process except the GUI thread at least `nice`; returns how
    many threads were changed. Threads started later by a lowered thread inherit its value."""
    task_dir = "/proc/self/task"
    if not hasattr(os, "setpriority") or not os.path.isdir(task_dir):
        return 0
    gui = gui_thread_id if gui_thread_id is not None else threading.main_thread().native_id
    changed = 0
    for name in os.listdir(task_dir):
        tid = int(name)
        if tid == gui:
            continue
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
                changed += 1
        except OSError:  # the thread ended meanwhile, or the system refuses: not an error
            pass
    return changed
