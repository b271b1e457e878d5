// The test and benchmark hooks the viewer puts on the page (viewer.js, frames.js): the
// browser tests call them to find a film's pixels on the page and what a frame decoded to.
interface Window {
  mammoViewer?: {
    describe(selector: string): { cpu: boolean; hasPixelSpacing: boolean; spacing: number[]; plane: unknown };
    imageToPage(selector: string, col: number, row: number): { x: number; y: number };
  };
  mammoFrames?: { facts(selector: string): unknown };
}
