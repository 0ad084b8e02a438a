from edgerec.cli import main

main()
