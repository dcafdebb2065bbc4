// The attack suite (test/security/attacks/) against a runner started without privileges, as in
// a pod under the restricted Pod Security Standard.
import { attackSuite } from './attacks/suite.js';

attackSuite('unprivileged');
