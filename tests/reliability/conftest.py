import sys
from pathlib import Path

# The fabricated scorer and score frames of the ML tests, and the kill helper beside this file.
sys.path.insert(0, str(Path(__file__).parents[1] / "ml"))
sys.path.insert(0, str(Path(__file__).parent))
