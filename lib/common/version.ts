/** The program's version, printed by `--version` and in the startup log line. */
export const VERSION = "0.1.0";
