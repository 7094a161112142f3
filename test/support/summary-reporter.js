/**
 * Prints one closing line CI can read: "N passed, N failed, N skipped". A run with no test
 * executed fails on purpose.
 */
class SummaryReporter {
  onRunComplete(_contexts, results) {
    const passed = results.numPassedTests;
    const failed = results.numFailedTests;
    const skipped = results.numPendingTests + results.numTodoTests;
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
    if (passed + failed === 0) {
      process.stdout.write('no test was executed\n');
      process.exitCode = 1;
    }
  }
}
module.exports = SummaryReporter;
