from secfl.cli import main

main()
