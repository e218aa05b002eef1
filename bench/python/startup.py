"""Case 5 for Python: build a 2-worker ProcessPoolExecutor, run one task, print FIRST."""
import concurrent.futures
import sys


def square(n):
    return n * n


if __name__ == "__main__":
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as ex:
        result = ex.submit(square, 7).result()
        sys.stdout.write(f"FIRST {result}\n")
        sys.stdout.flush()
