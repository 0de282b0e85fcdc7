from slim.cli import main

main()
