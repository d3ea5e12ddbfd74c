from gandist.cli import main
from gandist.leave_together import exit_process

if __name__ == "__main__":
    exit_process(main())
