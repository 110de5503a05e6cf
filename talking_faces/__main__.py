import sys

from talking_faces.cli import main

sys.exit(main())
